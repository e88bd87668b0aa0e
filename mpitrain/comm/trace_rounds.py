"""Rounds of a whole job, and which send each receive got, from a trace's events.

Steps in a trace are counted on each rank; a round is counted for the whole job. Replaying the
events in each rank's order with messages matched as MPI matches them (the k-th send from a to
b is the k-th receive at b from a), every move gets a round:

    send       one more than the sender's last round (its own sends follow one another)
    recv       one more than the receiver's last round, and not before the round of the send
    sendrecv   both: its send is posted at one more than the rank's last round

so a move of round k needed only moves of earlier rounds. A binomial broadcast to 8 ranks takes
3 rounds, the linear one 7 (the root's sends one after another); a ring all-reduce on p ranks
takes 2(p - 1), one per step on every rank at once.

    rounds, links = number_rounds(events)    # events as trace.gather() gives them (dicts)
    rounds[(call, rank, step)] -> round;  links: [(send event, its receive event), ...]
"""
from collections import defaultdict, deque


def number_rounds(events):
    """(rounds, links) for every call of the trace; rounds restart at 1 in each call."""
    rounds, links = {}, []
    by_call = defaultdict(list)
    for e in events:
        by_call[e["call"]].append(e)
    for call, mine in by_call.items():
        r, pairs = _replay(mine)
        rounds.update({(call, rank, step): n for (rank, step), n in r.items()})
        links.extend(pairs)
    return rounds, links


def _replay(events):
    queues = defaultdict(list)
    for e in sorted(events, key=lambda e: (e["rank"], e["step"])):
        queues[e["rank"]].append(e)
    queues = {rank: deque(q) for rank, q in queues.items()}
    clock = defaultdict(int)
    channels = defaultdict(deque)          # (from, to) -> deque of (round posted, send event)
    posted = set()                         # sendrecvs whose send half is in a channel
    rounds, links = {}, []
    progress = True
    while progress:
        progress = False
        for rank, queue in queues.items():
            while queue:
                e = queue[0]
                kind = e["kind"]
                if kind in ("send", "sendrecv") and id(e) not in posted:
                    channels[(rank, e["peer"][0])].append((clock[rank] + 1, e))
                    posted.add(id(e))
                    if kind == "send":
                        n = clock[rank] + 1
                        _done(rounds, clock, queue, e, n)
                        progress = True
                        continue
                source = e["peer"][-1]
                channel = channels[(source, rank)]
                if not channel:
                    break                  # its message is not sent yet: another rank first
                sent_round, sent = channel.popleft()
                links.append((sent, e))
                _done(rounds, clock, queue, e, max(clock[rank] + 1, sent_round))
                progress = True
    return rounds, links


def _done(rounds, clock, queue, e, n):
    rounds[(e["rank"], e["step"])] = n
    clock[e["rank"]] = n
    queue.popleft()
