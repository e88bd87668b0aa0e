"""The loop of one image-loader worker process (started by workers.ProcessDecoder):

    read ((slot file, slot serial), slot bytes, first, [(path, seed), ...], img_size, train) from stdin
    decode each image into the slot at first, first + 1, ...
    answer ("ok", count) or ("error", message) on stdout

It ends when stdin closes (the trainer exited or closed the loader).
"""
import mmap
import pickle
import sys

import numpy as np

from .decode import DataError, decode


def serve(inp, out):
    maps = {}
    while True:
        try:
            (name, serial), nbytes, first, chunk, img_size, train = pickle.load(inp)
            key = (name, serial)          # fd numbers are reused: the serial tells slots apart
        except EOFError:
            return
        try:
            if key not in maps:
                if len(maps) > 4:                        # slots the loader has let go
                    maps.pop(next(iter(maps))).close()
                with open(name, "r+b") as f:
                    maps[key] = mmap.mmap(f.fileno(), nbytes)
            count = nbytes // (3 * img_size * img_size)
            images = np.frombuffer(maps[key], np.uint8, count * 3 * img_size * img_size).reshape(
                count, 3, img_size, img_size)
            for k, (path, seed) in enumerate(chunk):
                images[first + k] = decode(path, img_size, train, np.random.default_rng(seed))
            reply = ("ok", len(chunk))
        except (DataError, OSError, ValueError) as exc:
            reply = ("error", str(exc))
        pickle.dump(reply, out)
        out.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
