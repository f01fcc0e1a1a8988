"""Render a small 10-class dataset of real recordings: random phrases on sampled instruments.

The distillation study of docs/benchmarks.md ("Why the teacher's knowledge does or does not
transfer", "On recordings rendered from Debian's sampled instruments") needs real, sampled
audio that no synthetic generator of ours made. Each clip is a random phrase (random notes,
lengths, velocities, tempo and transposition from a seeded RNG) of one General MIDI
instrument, rendered by FluidSynth from the FluidR3 GM soundfont (recorded samples), then
set to a random level with a little white noise. The class is the instrument.

Output (``--out``, default ``data/instruments``; git-ignored), readable without extra code:

- ``train/<class>/*.wav``, ``val/<class>/*.wav``, ``test/<class>/*.wav``: 16 kHz mono
  16-bit WAV, the layout ``FolderSource`` reads (``data.source.init_args.root``);
- ``class_labels_indices.csv`` and ``train.json``/``val.json``/``test.json``: the same
  clips as AST manifests for ``ManifestSource``.

Setup (Debian; mido is needed by this script only, so it is not in the project's lock)::

    apt-get install -y fluidsynth fluid-soundfont-gm
    pip install mido==1.3.3
    python scripts/render_instruments.py --out data/instruments

One FluidSynth run renders all clips of a (split, class) one after another, separated by
silence longer than any release tail, and the clips are cut out afterwards: loading the
140 MB soundfont once per clip would take minutes.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import tempfile
from pathlib import Path

import mido
import numpy as np
import soundfile as sf

#: (folder name, General MIDI program number 0-127). Families overlap on purpose (two
#: keyboards, two bowed strings, two reeds/winds), so that the task is not trivial.
INSTRUMENTS = [
    ("piano", 0),
    ("electric_piano", 4),
    ("vibraphone", 11),
    ("organ", 19),
    ("nylon_guitar", 24),
    ("violin", 40),
    ("cello", 42),
    ("trumpet", 56),
    ("clarinet", 71),
    ("flute", 73),
]
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
TICKS_PER_BEAT = 480
SLOT_GAP_S = 2.0  # silence between clips in one rendering: longer than any release tail


def phrase(rng: random.Random, seconds: float) -> list[tuple[float, float, int, int]]:
    """A random phrase: (start s, length s, MIDI pitch, velocity) notes within ``seconds``.

    Tempo 70-170 bpm, note values of 1/4 to 2 beats, a rest now and then, pitches from a
    random scale-free walk around a random centre in G3..G5 (all ten instruments play there).
    """
    beat = 60.0 / rng.uniform(70, 170)
    centre = rng.randint(55, 79)
    pitch, t, notes = centre, rng.uniform(0.0, 0.3), []
    end = seconds - 0.25  # last note-off: the clip keeps a bit of its release
    while t < end:
        length = beat * rng.choice([0.25, 0.5, 0.5, 1.0, 1.0, 1.5, 2.0])
        if rng.random() < 0.15:  # a rest
            t += length
            continue
        pitch = min(max(pitch + rng.randint(-5, 5), centre - 9), centre + 9)
        legato = rng.uniform(0.6, 1.0)
        notes.append((t, min(length * legato, end - t), pitch, rng.randint(45, 120)))
        t += length
    return [n for n in notes if n[1] > 0.02] or [(0.0, min(0.5, end), centre, 90)]


def write_midi(
    path: Path, program: int, clips: list[list[tuple[float, float, int, int]]], slot_s: float
) -> None:
    """One track at 120 bpm (1 beat = 0.5 s): clip k's notes start at k * slot_s."""
    ticks = lambda s: round(s * 2 * TICKS_PER_BEAT)  # noqa: E731  seconds -> ticks at 120 bpm
    events = []  # (tick, order, message): note-offs before note-ons at the same tick
    for k, notes in enumerate(clips):
        for start, length, pitch, velocity in notes:
            t0 = k * slot_s + start
            events.append((ticks(t0), 1, mido.Message("note_on", note=pitch, velocity=velocity)))
            events.append((ticks(t0 + length), 0, mido.Message("note_off", note=pitch, velocity=0)))
    events.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack(
        [
            mido.MetaMessage("set_tempo", tempo=500_000),
            mido.Message("program_change", program=program),
        ]
    )
    now = 0
    for tick, _, msg in events:
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=ticks(slot_s)))
    midi = mido.MidiFile(ticks_per_beat=TICKS_PER_BEAT)
    midi.tracks.append(track)
    midi.save(path)


def render(midi: Path, wav: Path, soundfont: str, sample_rate: int) -> np.ndarray:
    """FluidSynth, no reverb/chorus (their tails would cross clips) -> mono float array."""
    subprocess.run(
        ["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.6", "-r", str(sample_rate),
         "-F", str(wav), soundfont, str(midi)],
        check=True, capture_output=True,
    )  # fmt: skip
    audio, rate = sf.read(wav, dtype="float32", always_2d=True)
    if rate != sample_rate:
        raise RuntimeError(f"{wav}: fluidsynth wrote {rate} Hz, expected {sample_rate}")
    return audio.mean(axis=1)


def finish(clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random level (peak -24..-3 dBFS) and white noise 20-40 dB below the signal's RMS."""
    peak = float(np.abs(clip).max())
    if peak == 0.0:
        raise RuntimeError("fluidsynth rendered a silent clip")
    clip = clip / peak * 10 ** (rng.uniform(-24, -3) / 20)
    rms = float(np.sqrt(np.mean(clip**2)))
    noise = (
        rng.standard_normal(clip.size).astype(np.float32) * rms * 10 ** (-rng.uniform(20, 40) / 20)
    )
    return np.clip(clip + noise, -1.0, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/instruments")
    parser.add_argument("--soundfont", default=SOUNDFONT)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--train", type=int, default=32, help="training clips per class")
    parser.add_argument("--val", type=int, default=8, help="validation clips per class")
    parser.add_argument("--test", type=int, default=8, help="test clips per class")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    slot_s = args.seconds + SLOT_GAP_S
    per_split = {"train": args.train, "val": args.val, "test": args.test}
    manifests: dict[str, list[dict[str, str]]] = {s: [] for s in per_split}
    with tempfile.TemporaryDirectory() as tmp:
        for split, count in per_split.items():
            for name, program in INSTRUMENTS:
                rng = random.Random(f"{args.seed}/{split}/{name}")
                noise_rng = np.random.default_rng(rng.getrandbits(32))
                clips = [phrase(rng, args.seconds) for _ in range(count)]
                write_midi(Path(tmp) / "p.mid", program, clips, slot_s)
                audio = render(
                    Path(tmp) / "p.mid", Path(tmp) / "p.wav", args.soundfont, args.sample_rate
                )
                folder = out / split / name
                folder.mkdir(parents=True, exist_ok=True)
                n = round(args.seconds * args.sample_rate)
                for k in range(count):
                    start = round(k * slot_s * args.sample_rate)
                    clip = np.zeros(n, dtype=np.float32)
                    part = audio[start : start + n]
                    clip[: part.size] = part
                    path = folder / f"{name}_{k:03d}.wav"
                    sf.write(path, finish(clip, noise_rng), args.sample_rate, subtype="PCM_16")
                    manifests[split].append({"wav": str(path.relative_to(out)), "labels": name})
                print(f"{split}/{name}: {count} clips")
    with (out / "class_labels_indices.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["index", "mid", "display_name"])
        writer.writerows((i, name, name) for i, (name, _) in enumerate(INSTRUMENTS))
    for split, entries in manifests.items():
        (out / f"{split}.json").write_text(json.dumps({"data": entries}, indent=1))
    print(f"wrote {sum(per_split.values()) * len(INSTRUMENTS)} clips under {out}")


if __name__ == "__main__":
    main()
