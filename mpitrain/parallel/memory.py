"""The memory accountant: what one rank should hold at its peak, item by item, for the chosen
parallelism, beside what it measured (`python -m mpitrain.train ... --memory-report`).

Model states, for Psi trainable parameters (the ZeRO paper counts (2 + 2 + K) Psi for fp16
parameters and gradients plus K = 12 bytes of fp32 master weights and Adam moments; here the
parameters are fp32 and *are* the master weights, bf16 exists only as autocast's copies):

    item                      dp            zero1               zero2                zero3
    parameters (fp32)         4 Psi         4 Psi               4 Psi                4 Psi/p + gathered
    gradients (fp32)          4 Psi         4 Psi + 4 Psi/p     4 Psi/p + one bucket one unit x 2 (+ 4 Psi/p
                                                                                      from backward to step)
                                            (packed copy + shard)
    optimizer (AdamW: 2 x 4)  8 Psi         8 Psi/p             8 Psi/p              8 Psi/p  (SGD: 4)
    wire buckets              w Psi         -                   -                    -  (w: grad dtype bytes;
                              none for fp32: each .grad is a view of its bucket)
  (zero3 "gathered": the root unit -- embeddings, final norm, head -- and window + 1 blocks, or
  every block with keep_between)

Per step on top, from forward to the start of backward:
    bf16 weight copies        2 x the matrix weights (autocast casts them once and backward keeps
                              them); none in fp32
    activations               what backward keeps, per block and token, for width D and MLP
                              width M: bf16 autocast 22 D + 4 M bytes (fp32 residual 4 D, norm
                              input 4 D, the casts feeding qkv and fc1 2 D each, qkv 6 D, attention
                              output 2 D and its re-laid-out copy 2 D; fc1 output and GELU output
                              2 M each), fp32 36 D + 8 M; plus the images, and the final norm's
                              input; with --checkpoint-activations each block keeps its input
                              (4 D) and one block is recomputed at a time
    backward temporaries      the first block's MLP gradients: 2 x tokens x M x activation bytes

The peak is the larger of (states + copies + activations + temporaries), reached as backward
starts, and (states + the full gradient ZeRO-1 packs), reached as it ends. Measured:
torch.cuda.max_memory_allocated over one step on GPU (what torch's allocator handed out: not
the CUDA context, nor the peer kernels' workspaces); on CPU the process's peak resident set
minus its size before the model was built (everything the process touched, so only a rough
check).
"""
import resource
from dataclasses import dataclass

import torch

GB = 1 << 30


@dataclass
class Item:
    name: str
    bytes: int
    note: str = ""


def _matrix_params(cfg):
    """Parameters autocast copies to 16 bits: everything but the LayerNorms and the cls and
    position embeddings (added in fp32)."""
    D = cfg.embed_dim
    norms = (4 * cfg.depth + 2) * D
    embeddings = D + cfg.tokens * D
    return cfg.count_params() - norms - embeddings


def _largest_param(cfg):
    """Elements of the model's largest parameter tensor."""
    D, M = cfg.embed_dim, cfg.mlp_dim
    return max(D * M, 3 * D * D, D * cfg.in_chans * cfg.patch_size ** 2, cfg.num_classes * D,
               cfg.tokens * D)


def activation_bytes(cfg, micro_batch, precision, checkpoint_activations=False):
    """(activations kept for backward, backward temporaries) in bytes, one rank. (With bf16
    parameters the residual stream is bf16, but each norm's fp32 cast of it is what is kept:
    the same bytes.)"""
    D, M, N, B = cfg.embed_dim, cfg.mlp_dim, cfg.tokens, micro_batch
    half = precision in ("bf16", "fp16")
    act = 2 if half else 4
    per_token_block = (22 * D + 4 * M) if half else (36 * D + 8 * M)
    images = B * cfg.in_chans * cfg.img_size ** 2 * (4 + (2 if half else 0))
    final_norm = 4 * B * N * D
    if checkpoint_activations:
        kept = cfg.depth * 4 * B * N * D + B * N * per_token_block
    else:
        kept = cfg.depth * B * N * per_token_block
    return kept + images + final_norm, 2 * B * N * M * act


def _block_params(cfg):
    D, M = cfg.embed_dim, cfg.mlp_dim
    return 3 * D * D + 3 * D + D * D + D + D * M + M + M * D + D + 4 * D


def predict(cfg, parallel, world_size, micro_batch, *, precision="fp32", optimizer="adamw",
            grad_dtype="fp32", bucket_mb=25.0, checkpoint_activations=False, window=1,
            keep_between=False, param_dtype="fp32", grad_views=True, diloco=None):
    """The items of one rank's peak and the peak itself: ([Item], peak bytes). param_dtype
    (zero3): the dtype blocks are gathered and computed in; grad_views (dp): fp32 gradients are
    views of their buckets (False: --no-grad-views, the buckets are memory of their own).
    diloco: {"inner": dp | zero1 | zero2, "workers": k, "fragments": F, "outer_dtype": ...}:
    the inner engine over world_size / k ranks, plus the outer state (parallel/diloco.py)."""
    if parallel == "diloco":
        return _predict_diloco(cfg, world_size, micro_batch, precision, optimizer=optimizer,
                               grad_dtype=grad_dtype, bucket_mb=bucket_mb,
                               checkpoint_activations=checkpoint_activations,
                               grad_views=grad_views, diloco=diloco)
    psi = cfg.count_params()
    p = world_size
    stage = parallel if parallel.startswith("zero") else "dp"
    opt_per_param = 8 if optimizer == "adamw" else 4
    wire = {"fp32": 4, "bf16": 2, "fp16": 2}[grad_dtype]
    bucket = min(max(int(bucket_mb * 2 ** 20), 4 * _largest_param(cfg)), 4 * psi)   # (a larger
    # parameter gets a bucket of its own)
    items = [Item("parameters", 4 * psi, f"fp32, Psi = {psi / 1e6:.1f} M")]
    grads_at_end = 0                 # gradient memory that exists only as backward ends
    if stage == "dp":
        views = p > 1 and grad_dtype == "fp32" and grad_views   # .grad: views of the buckets
        items.append(Item("gradients", 4 * psi, "fp32 .grad, kept between steps"
                          + (", views of the wire buckets" if views else "")))
        items.append(Item("optimizer state", opt_per_param * psi, optimizer))
        if p > 1 and not views:
            items.append(Item("wire buckets", wire * psi, f"{grad_dtype}, every bucket"))
    elif stage == "zero3":
        block = _block_params(cfg)
        root = psi - cfg.depth * block
        gathered = cfg.depth * block if keep_between else min(cfg.depth, window + 1) * block
        shard = -(-psi // p)
        pb = 2 if param_dtype == "bf16" else 4
        items.clear()
        items.append(Item("parameters", 4 * shard + pb * (root + gathered),
                          f"fp32 shards + root + {'every block' if keep_between else f'{window + 1} block(s)'} "
                          f"gathered in {param_dtype}"))
        items.append(Item("gradients", (pb + wire) * max(block, root),
                          f"one unit's .grad ({param_dtype}) and its packed copy ({grad_dtype}); "
                          f"+ the shard's {4 * shard / GB:.3f} GiB as backward ends"))
        grads_at_end = 4 * shard                  # the shard gradients, made by the reduce-scatters
        items.append(Item("optimizer state", opt_per_param * shard, f"{optimizer}, 1/{p}"))
    else:
        shard = -(-psi // (4 * p)) * 4
        opt = opt_per_param * shard
        if stage == "zero1":
            items.append(Item("gradients", 4 * psi + 4 * shard, "packed copy + this rank's shard"))
            grads_at_end = 4 * psi                                    # every .grad, before packing
        else:
            items.append(Item("gradients", 4 * shard + bucket, "this rank's shard + one bucket"))
            grads_at_end = bucket                                     # the bucket's .grad
        items.append(Item("optimizer state", opt, f"{optimizer}, 1/{p}"))
    bf16_params = stage == "zero3" and param_dtype == "bf16"
    casts = 2 * _matrix_params(cfg) if precision in ("bf16", "fp16") and not bf16_params else 0
    if casts:
        items.append(Item("16-bit weight copies", casts, "autocast, held until backward"))
    kept, temporaries = activation_bytes(cfg, micro_batch, precision, checkpoint_activations)
    items.append(Item("activations", kept, f"{micro_batch} images"))
    items.append(Item("backward temporaries", temporaries, "first block's MLP gradients"))
    states = sum(i.bytes for i in items if i.name not in
                 ("16-bit weight copies", "activations", "backward temporaries"))
    peak = max(states + casts + kept + temporaries, states + grads_at_end)
    return items, peak


def _predict_diloco(cfg, world_size, micro_batch, precision, *, optimizer, grad_dtype,
                    bucket_mb, checkpoint_activations, grad_views, diloco):
    """Sharded over the worker's m ranks: theta_global and the outer momentum (and the error
    feedback when compressed), 4 bytes each per element of the shard. An outer step runs after
    the optimizer's, when the activations are gone; it holds the outer gradient of the shard and
    the gathered theta_global of one fragment (4 bytes x params / F; with overlap also the
    fragment's theta_local at the start and, at the merge, its theta_local now and their
    difference)."""
    m = world_size // diloco["workers"]
    items, peak = predict(cfg, diloco["inner"], m, micro_batch, precision=precision,
                          optimizer=optimizer, grad_dtype=grad_dtype, bucket_mb=bucket_mb,
                          checkpoint_activations=checkpoint_activations, grad_views=grad_views)
    states = sum(i.bytes for i in items if i.name in ("parameters", "gradients", "optimizer state",
                                                      "wire buckets"))
    psi = cfg.count_params()
    shard = -(-psi // m)
    copies = 2 + (diloco["outer_dtype"] != "fp32")
    outer = 4 * copies * shard
    items.append(Item("outer state", outer,
                      f"theta_global + momentum{' + error feedback' if copies == 3 else ''}, 1/{m}"))
    fragment = 4 * -(-psi // diloco["fragments"])
    temporaries = fragment * (3 if diloco.get("overlap") else 1) + fragment // m
    items.append(Item("outer step temporaries", temporaries,
                      "after the optimizer step: a fragment's gathered theta_global and its "
                      "shard's outer gradient" + (" and local copies" if diloco.get("overlap") else "")))
    return items, max(peak + outer, states + outer + temporaries)


def storage_bytes(tensors):
    """Bytes of the distinct storages behind `tensors` (views of one buffer count once)."""
    seen = {}
    for t in tensors:
        if t is not None and t.numel():
            s = t.untyped_storage()
            seen[s.data_ptr()] = s.nbytes()
    return sum(seen.values())


def held_bytes(model, engine, optimizer):
    """What a rank really holds right now, by the accountant's model-state items: the bytes of
    the tensors behind each (the oracle the predictions are tested against)."""
    from .zero import Zero
    from .zero3 import Zero3
    params = list(model.parameters())
    grads = [p.grad for p in params]
    if isinstance(engine, Zero):
        grads += [g.master.grad for g in engine.groups] + [g.grad_flat for g in engine.groups]
        grads += [engine._bucket_buffer, engine._wire_buffer]
    elif isinstance(engine, Zero3):
        params = [f.master for f in engine.flat_shards()] + [
            f.full for f in engine.flat_shards() if f.gathered]
        grads += [f.master.grad for f in engine.flat_shards()] + [engine._bucket_buffer,
                                                                   engine._wire_buffer]
    held = {"parameters": storage_bytes(params), "gradients": storage_bytes(grads),
            "optimizer state": storage_bytes(v for s in optimizer.state.values()
                                             for v in s.values() if torch.is_tensor(v) and v.ndim)}
    packed = [b.wire for b in getattr(engine, "buckets", ()) if b.views is None]
    if packed:                       # (a bucket of views is the gradients' own memory)
        held["wire buckets"] = storage_bytes(packed)
    return held


def watch_zero3_peak(model, engine, optimizer):
    """ZeRO-3's model state peaks inside backward, at its first reduce-scatter of a step (one
    block's gradients out, the root and window + 1 blocks gathered). Returns a list that
    receives held_bytes() there: clear it before each step to catch that step's."""
    seen = []

    def peek(unit):
        if not seen:
            seen.append(held_bytes(model, engine, optimizer))
    engine.before_reduce_scatter.append(peek)
    return seen


def rss_bytes():
    """This process's resident set now (Linux /proc), in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def report(items, peak, measured, how, rank, parallel, world_size):
    """The table, as text."""
    lines = [f"memory report, rank {rank} ({parallel}, {world_size} rank(s)): predicted vs measured"]
    for item in items:
        lines.append(f"  {item.name:22s} {item.bytes / GB:8.3f} GiB   {item.note}")
    lines.append(f"  {'predicted peak':22s} {peak / GB:8.3f} GiB")
    lines.append(f"  {'measured peak':22s} {measured / GB:8.3f} GiB   {how}; "
                 f"measured / predicted = {measured / peak:.3f}")
    return "\n".join(lines)
