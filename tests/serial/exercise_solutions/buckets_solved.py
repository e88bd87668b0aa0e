"""The skeleton of examples/labs/exercises/bucketed_data_parallel.py, filled in as its text says.
SUM=1 in the environment makes it sum instead of average: broken."""
import os

import torch

OP = "sum" if os.environ.get("SUM") else "avg"


class DataParallel:
    def __init__(self, model, world, *, bucket_mb=25.0):
        self.world = world
        params = [p for p in model.parameters() if p.requires_grad]
        cap = bucket_mb * 2**20
        self.buckets, current, size = [], [], 0
        for p in reversed(params):
            nbytes = p.numel() * p.element_size()
            if current and size + nbytes > cap:
                self.buckets.append(current)
                current, size = [], 0
            current.append(p)
            size += nbytes
        if current:
            self.buckets.append(current)
        self.buckets = [{"params": b, "flat": None, "pending": len(b)} for b in self.buckets]
        self.bucket_of = {id(p): b for b in self.buckets for p in b["params"]}
        for p in params:
            p.register_post_accumulate_grad_hook(self._grad_ready)

    def _grad_ready(self, param):
        bucket = self.bucket_of[id(param)]
        bucket["pending"] -= 1
        if bucket["pending"] == 0:
            bucket["flat"] = torch.cat([p.grad.reshape(-1) for p in bucket["params"]])
            self.world.all_reduce(bucket["flat"], op=OP)
            bucket["pending"] = len(bucket["params"])

    def synchronize(self):
        for bucket in self.buckets:
            at = 0
            for p in bucket["params"]:
                p.grad.copy_(bucket["flat"][at: at + p.numel()].view_as(p))
                at += p.numel()
