"""Exercise: one ZeRO-1 step. Fill in Zero, then check it:

    python -m mpitrain.labs check zero1 examples/labs/exercises/zero1.py

Data parallel keeps the whole optimizer state on every rank (for AdamW, 2 floats per
parameter: more memory than the model). ZeRO-1 shards it: rank r owns elements [r*S, (r+1)*S)
of one flat vector of all parameters and keeps the optimizer state of that slice only.
  - __init__: lay the parameters out in one flat float32 tensor, padded to a multiple of the
    world size p (S = len / p); make `master`, this rank's slice as a leaf tensor that
    requires grad, and self.optimizer = make_optimizer([{"params": [master]}]).
  - synchronize(), after backward: pack every p.grad into one flat tensor, divide by p, and
    reduce-scatter it (world.reduce_scatter(flat, out)) so that rank r receives the sum of
    its slice only; that is master.grad.
  - step(): self.optimizer.step() updates master; then all-gather every rank's slice
    (world.all_gather(master, flat)) and copy the flat vector back into the parameters.
  - zero_grad(): clear the parameters' .grad.

The checker trains a 4-layer MLP for 3 steps with SGD with momentum at 1-5 ranks, compares
every parameter with one process on the whole batch, and counts the elements of optimizer
state your rank keeps: more than its shard fails. The library's version, whose parameters
are views into the flat buffer so no copy is needed, is mpitrain/parallel/zero.py.
"""
import torch


class Zero:
    def __init__(self, model, world, make_optimizer, stage=1):
        self.world = world
        self.params = [p for p in model.parameters() if p.requires_grad]
        p = world.size
        total = sum(q.numel() for q in self.params)
        self.shard = -(-total // p)                        # S: elements per rank
        self.flat = torch.zeros(self.shard * p)
        # TODO: copy the parameters into self.flat; make self.master (this rank's slice,
        #       a leaf that requires grad, with a .grad of zeros) and self.optimizer
        raise NotImplementedError("Zero.__init__")

    def zero_grad(self):
        for q in self.params:
            q.grad = None

    def synchronize(self):
        # TODO: pack the gradients, divide by the world size, reduce-scatter into master.grad
        raise NotImplementedError("Zero.synchronize")

    def step(self):
        # TODO: step the optimizer, all-gather the slices into self.flat, copy back into params
        raise NotImplementedError("Zero.step")
