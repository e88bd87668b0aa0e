"""The skeleton of examples/labs/exercises/zero1.py, filled in as its text says. REPLICATED=1 in
the environment keeps the whole optimizer on every rank: right in value, broken as ZeRO."""
import os

import torch


class Zero:
    def __init__(self, model, world, make_optimizer, stage=1):
        self.world = world
        self.params = [p for p in model.parameters() if p.requires_grad]
        p = world.size
        total = sum(q.numel() for q in self.params)
        self.shard = -(-total // p)
        self.flat = torch.zeros(self.shard * p)
        torch.cat([q.detach().reshape(-1) for q in self.params], out=self.flat[:total])
        self.replicated = bool(os.environ.get("REPLICATED"))
        if self.replicated:
            self.optimizer = make_optimizer([{"params": self.params}])
            return
        lo = world.rank * self.shard
        self.master = self.flat[lo: lo + self.shard].clone().requires_grad_(True)
        self.master.grad = torch.zeros_like(self.master)
        self.optimizer = make_optimizer([{"params": [self.master]}])

    def zero_grad(self):
        for q in self.params:
            q.grad = None

    def _packed_grad(self):
        flat = torch.zeros_like(self.flat)
        total = sum(q.numel() for q in self.params)
        torch.cat([q.grad.reshape(-1) for q in self.params], out=flat[:total])
        return flat / self.world.size

    def synchronize(self):
        flat = self._packed_grad()
        if self.replicated:
            self.world.all_reduce(flat)
            at = 0
            for q in self.params:
                q.grad.copy_(flat[at: at + q.numel()].view_as(q))
                at += q.numel()
            return
        self.world.reduce_scatter(flat, self.master.grad)

    def step(self):
        self.optimizer.step()
        if self.replicated:
            return
        self.world.all_gather(self.master.detach(), self.flat)
        at = 0
        with torch.no_grad():
            for q in self.params:
                q.copy_(self.flat[at: at + q.numel()].view_as(q))
                at += q.numel()
