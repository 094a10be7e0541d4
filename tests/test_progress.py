"""_progress.py: progress bars in a log."""

from __future__ import annotations

SHAPE = (1, 3, 112, 112)


def test_progress_bars_write_a_few_lines_into_a_log(capsys, micro):
    import time

    from sparsevit_sdk import SearchSession
    from sparsevit_sdk._progress import progress_bar
    from sparsevit_sdk.accuracy import AgreementProxy
    from sparsevit_sdk.demo import probe_images

    for _ in progress_bar(range(300), desc="work"):
        time.sleep(0.002)  # 0.6 s: tqdm's own 0.1 s interval would write six lines or more
    assert 1 <= capsys.readouterr().err.count("work") <= 3  # stderr here is no terminal
    proxy = AgreementProxy(micro, probe_images((1, 3, 64, 64), num_images=1)[0])
    SearchSession(micro, "cpu", input_shape=SHAPE, proxy=proxy, latency_budget=0.95, population=4, parents=2,
                  generations=6, progress=True).run()
    assert 1 <= capsys.readouterr().err.count("search (ga)") <= 3
