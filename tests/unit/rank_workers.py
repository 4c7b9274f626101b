"""A worker process for the two-process tests of ``lambda_dpo.distributed`` (kept apart from
the test module, so a spawned child imports torch and this file only)."""

from __future__ import annotations


def rank_zero_worker(rank: int, port: int, queue) -> None:
    """Calls ``on_rank_zero`` twice in a 2-process gloo group: a success, then a failure."""
    import torch.distributed as dist

    from lambda_dpo.distributed import on_rank_zero

    def compute(fail: bool):
        assert rank == 0, "only rank 0 computes"
        if fail:
            raise KeyError("no such task")
        return {"lm_eval/mean": 0.25}

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        for fail in (False, True):
            try:
                queue.put((rank, fail, on_rank_zero(lambda: compute(fail))))
            except Exception as error:
                queue.put((rank, fail, f"{type(error).__name__}: {error}"))
    finally:
        dist.destroy_process_group()
