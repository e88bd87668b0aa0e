"""The GPU transports move data in one call, sendrecv, whose either side may be absent (None):
send and recv are that call with one side only."""


class OneCall:
    def send(self, buf, dest):
        self.sendrecv(buf, dest, None, None)

    def recv(self, buf, source):
        self.sendrecv(None, None, buf, source)
