"""Speed measurement: the one timing engine and the per-schedule speed of an AST.

``engine`` (interleaved rounds, clocks, threads, spread, memory), ``machine`` (where a
figure was taken) and ``schedules`` (each distinct merge schedule of a model timed once);
the benchmark's measurements: ``models`` (what is timed), ``measure`` (rows, checks, run
meta), ``inference``, ``training``, ``epoch`` and ``data_loading`` (one benchmark each).
The ``benchmark`` tool, the demo and ``report`` measure through here; nothing is timed
inside a training or test loop.
"""
