"""Why the server's decode thread runs the int8 draft slower than the main thread does.

    python scripts/thread_tax.py

Times one dynamic-quantized linear (the int8 draft's layer shape, one token) in fresh threads
before the main thread has run any parallel torch work, then in the main thread, then in a fresh
thread again. What it shows is consistent with libgomp's throttling: the main thread's OpenMP
pool lives as long as the process; once it exists, another thread's pool makes more OpenMP
threads than cores, so that pool's workers sleep between parallel regions instead of spinning
and every small op pays a wake-up (a fresh thread's pool is freed when the thread ends). On the
2-core AVX512-BF16 VM: 59-80 us in fresh threads, 57-74 us in the main thread, 148-151 us in a
thread after the main thread ran (`OMP_WAIT_POLICY=PASSIVE` makes the main thread as slow, 181 us).
"""

from __future__ import annotations

import threading
import time

import torch


def bench(tag: str, n: int = 3000) -> None:
    layer = torch.ao.nn.quantized.dynamic.Linear(896, 4864)
    x = torch.randn(1, 896)
    for _ in range(50):
        layer(x)
    start = time.perf_counter()
    for _ in range(n):
        layer(x)
    print(f"{tag}: {(time.perf_counter() - start) / n * 1e6:.1f} us", flush=True)


def in_thread(tag: str) -> None:
    worker = threading.Thread(target=bench, args=(tag,))
    worker.start()
    worker.join()


def main() -> None:
    torch.set_num_threads(2)
    in_thread("a thread, the main thread never parallel")
    in_thread("another thread")
    bench("the main thread")
    in_thread("a thread after the main thread ran")


if __name__ == "__main__":
    main()
