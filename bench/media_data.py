"""A SIMULATED media preference set: degraded photos and speech, the less degraded preferred.

There is no real image or audio preference set that works offline here, so this script makes
one whose labels are known by construction, and says so (every row's metadata carries
`"simulated": true` and what was done to each side). It is for the benchmarks and the
reward-model figures; it is not human preference data.

Images: crops of the photos bundled with scikit-image (`skimage.data`; plus scikit-learn's
two sample photos), each pair two copies of one crop, degraded by Gaussian blur, Gaussian
noise, JPEG artefacts or down-and-up-sampling. Audio: speech from espeak-ng (Debian package
`espeak-ng`) in several voices, and synthetic tones (chords with an envelope), degraded by
white noise, clipping, low-pass filtering or added mains hum. In each pair the chosen side
has a mild degradation (or none), the rejected side a strong one (severity 0-0.4 against
0.6-1.0, the kinds drawn independently).

`--split tune` and `--split heldout` use DIFFERENT photos (and so different crops) and
DIFFERENT voices and sentences, so figures measured on the held-out split were not tuned on.

    .venv/bin/python bench/media_data.py --kind image --split tune --pairs 300 --seed 0 \\
        --out /tmp/images-tune.zip
    .venv/bin/python bench/media_data.py --kind audio --split heldout --pairs 160 --seed 1 \\
        --out /tmp/audio-heldout.zip

The output is an import archive: `pairs.jsonl` (TRL rows, {"prompt": ..., "chosen":
{"image": "img/..."}, "rejected": {"image": ...}, "id": ..., "metadata": {...}}) and the files
(JPEG images, FLAC audio; file names say nothing about which side is which).
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import orjson

IMAGE_SIZE = 224
AUDIO_RATE = 16_000

# Photos per split (file names in skimage/data; "sklearn:<name>" for scikit-learn's).
PHOTOS = {
    "tune": [
        "astronaut.png",
        "coffee.png",
        "camera.png",
        "brick.png",
        "ihc.png",
        "rocket.jpg",
        "grass.png",
        "moon.png",
        "sklearn:china.jpg",
    ],
    "heldout": [
        "chelsea.png",
        "motorcycle_left.png",
        "hubble_deep_field.jpg",
        "retina.jpg",
        "coins.png",
        "gravel.png",
        "page.png",
        "sklearn:flower.jpg",
    ],
}
VOICES = {
    "tune": ["en-us", "en-us+f3", "en-gb+m3", "en-gb-x-rp+f2"],
    "heldout": ["en-gb", "en-gb-scotland+f4", "en-029+m5", "en-us+klatt"],
}
SENTENCES = {
    "tune": [
        "The quick brown fox jumps over the lazy dog.",
        "Please leave your message after the tone.",
        "The train to the airport leaves every twenty minutes.",
        "Turn left at the next corner and keep going straight.",
        "Today will be sunny with a light breeze in the afternoon.",
        "Your order has been shipped and will arrive on Monday.",
        "Remember to water the plants before you go on holiday.",
        "The library closes at eight o'clock on weekdays.",
    ],
    "heldout": [
        "A cup of warm tea is the best way to start the morning.",
        "The meeting has been moved to the third floor.",
        "Seven ships sailed across the harbour at dawn.",
        "Check the battery before you start the long drive.",
        "Music drifted from the open window across the square.",
        "The museum offers free entry on the first Sunday.",
        "She painted the fence a bright shade of green.",
        "Dinner will be served in the garden at seven.",
    ],
}
IMAGE_PROMPTS = [
    "Which version of this photo has the better image quality?",
    "Pick the sharper, cleaner picture.",
    "Which image would you rather publish?",
    "Choose the better rendering of this scene.",
]
AUDIO_PROMPTS = [
    "Which recording sounds cleaner?",
    "Pick the clip with the better audio quality.",
    "Which version would you rather listen to?",
    "Choose the better sounding take.",
]
IMAGE_DEGRADATIONS = ("blur", "noise", "jpeg", "pixelate")
AUDIO_DEGRADATIONS = ("noise", "clip", "lowpass", "hum")


def severities(rng: np.random.Generator) -> tuple[float, float]:
    """(chosen, rejected) severities: mild (none a quarter of the time) against strong."""
    mild = 0.0 if rng.random() < 0.25 else float(rng.uniform(0.05, 0.4))
    return mild, float(rng.uniform(0.6, 1.0))


# ---------------------------------------------------------------- images


def photos(split: str) -> list:
    """The split's source photos as RGB PIL images."""
    from PIL import Image

    out = []
    for name in PHOTOS[split]:
        if name.startswith("sklearn:"):
            from sklearn.datasets import load_sample_image

            out.append(Image.fromarray(load_sample_image(name.split(":", 1)[1])).convert("RGB"))
            continue
        try:
            import skimage
        except ImportError:
            sys.exit("scikit-image is not installed: pip install scikit-image")
        path = Path(skimage.__file__).parent / "data" / name
        with Image.open(path) as img:
            out.append(img.convert("RGB"))
    return out


def crop(photo, rng: np.random.Generator):
    """A random square crop (40-100 % of the short side), resized to IMAGE_SIZE."""
    from PIL import Image

    w, h = photo.size
    side = int(min(w, h) * rng.uniform(0.4, 1.0))
    x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    return photo.crop((x, y, x + side, y + side)).resize(
        (IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS
    )


def image_degrade(img, kind: str, severity: float, rng: np.random.Generator):
    """`img` degraded by `kind` at `severity` in [0, 1] (0: unchanged)."""
    from PIL import Image, ImageFilter

    if severity <= 0:
        return img
    if kind == "blur":
        return img.filter(ImageFilter.GaussianBlur(radius=0.3 + 3.7 * severity))
    if kind == "noise":
        x = np.asarray(img, dtype=np.float32)
        x = x + rng.normal(0, 4 + 46 * severity, x.shape)
        return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))
    if kind == "jpeg":
        out = io.BytesIO()
        img.save(out, format="JPEG", quality=max(2, int(round(60 - 58 * severity))))
        with Image.open(io.BytesIO(out.getvalue())) as back:
            return back.convert("RGB")
    if kind == "pixelate":
        small = max(8, int(IMAGE_SIZE / (1.5 + 10 * severity)))
        return img.resize((small, small), Image.Resampling.BILINEAR).resize(
            img.size, Image.Resampling.NEAREST
        )
    raise ValueError(kind)


def image_pairs(split: str, n: int, seed: int):
    """Yield (prompt, chosen bytes, rejected bytes, metadata) for `n` image pairs."""
    rng = np.random.default_rng([seed, 1 if split == "heldout" else 0, 17])
    sources = photos(split)
    for i in range(n):
        index = i % len(sources)
        base = crop(sources[index], rng)
        mild, strong = severities(rng)
        kind_c, kind_r = rng.choice(IMAGE_DEGRADATIONS, 2)
        chosen = image_degrade(base, str(kind_c), mild, rng)
        rejected = image_degrade(base, str(kind_r), strong, rng)
        meta = {
            "simulated": True,
            "source": PHOTOS[split][index],
            "chosen_degradation": [str(kind_c), round(mild, 3)],
            "rejected_degradation": [str(kind_r), round(strong, 3)],
        }
        yield str(rng.choice(IMAGE_PROMPTS)), _jpeg(chosen), _jpeg(rejected), meta


def _jpeg(img) -> bytes:
    # High quality, so that the output format adds next to nothing to the degradations.
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=95)
    return out.getvalue()


# ---------------------------------------------------------------- audio


def speech(voice: str, text: str, workdir: Path) -> np.ndarray:
    """`text` spoken by espeak-ng's `voice`, mono float32 at AUDIO_RATE."""
    import librosa
    import soundfile

    path = workdir / "say.wav"
    try:
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", "160", "-w", str(path), text],
            check=True,
            capture_output=True,
        )
    except FileNotFoundError:
        sys.exit("espeak-ng is not installed: apt-get install -y espeak-ng")
    wave, rate = soundfile.read(path, dtype="float32", always_2d=True)
    wave = librosa.resample(wave.mean(axis=1), orig_sr=rate, target_sr=AUDIO_RATE)
    return (0.7 * wave / max(1e-6, float(np.abs(wave).max()))).astype(np.float32)


def tone(rng: np.random.Generator) -> np.ndarray:
    """A chord of 2-4 harmonic tones, 1.5-3 s, with attack and decay."""
    seconds = float(rng.uniform(1.5, 3.0))
    t = np.arange(int(seconds * AUDIO_RATE)) / AUDIO_RATE
    root = 110.0 * 2 ** (int(rng.integers(0, 24)) / 12)
    wave = np.zeros_like(t)
    for step in rng.choice([0, 3, 4, 7, 10, 12], size=int(rng.integers(2, 5)), replace=False):
        f = root * 2 ** (step / 12)
        for h in (1, 2, 3):
            wave += np.sin(2 * np.pi * f * h * t + rng.uniform(0, 6.3)) / h
    envelope = np.minimum(1, t / 0.05) * np.exp(-t * rng.uniform(0.3, 1.5))
    wave *= envelope
    return (0.7 * wave / np.abs(wave).max()).astype(np.float32)


def audio_degrade(wave: np.ndarray, kind: str, severity: float, rng: np.random.Generator):
    """`wave` degraded by `kind` at `severity` in [0, 1] (0: unchanged)."""
    from scipy import signal

    if severity <= 0:
        return wave
    if kind == "noise":  # white noise from 40 dB SNR (mild) down to 0 dB (strong)
        snr_db = 40 - 40 * severity
        power = float(np.mean(wave**2))
        return wave + rng.normal(0, np.sqrt(power / 10 ** (snr_db / 10)), wave.shape)
    if kind == "clip":  # gain into a hard clip
        gain = 1 + 14 * severity
        return np.clip(wave * gain, -0.7, 0.7)
    if kind == "lowpass":  # cut-off from 7 kHz (mild) down to 500 Hz (strong)
        cutoff = 7000 * (500 / 7000) ** severity
        sos = signal.butter(6, cutoff, btype="low", fs=AUDIO_RATE, output="sos")
        return signal.sosfilt(sos, wave)
    if kind == "hum":  # mains hum and its harmonics, up to as loud as the signal
        t = np.arange(len(wave)) / AUDIO_RATE
        base = float(rng.choice([50.0, 60.0]))
        hum = sum(np.sin(2 * np.pi * base * k * t) / k for k in (1, 2, 3, 5))
        level = float(np.sqrt(np.mean(wave**2))) * (0.05 + 1.5 * severity)
        return wave + level * hum / np.sqrt(np.mean(hum**2))
    raise ValueError(kind)


def audio_pairs(split: str, n: int, seed: int):
    """Yield (prompt, chosen bytes, rejected bytes, metadata) for `n` audio pairs: two
    thirds speech, one third tones."""
    rng = np.random.default_rng([seed, 1 if split == "heldout" else 0, 29])
    cache: dict[tuple[str, str], np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            if i % 3 == 2:
                base, source = tone(rng), "tone"
            else:
                voice = VOICES[split][int(rng.integers(len(VOICES[split])))]
                text = SENTENCES[split][int(rng.integers(len(SENTENCES[split])))]
                if (voice, text) not in cache:
                    cache[(voice, text)] = speech(voice, text, Path(tmp))
                base, source = cache[(voice, text)], f"espeak-ng {voice}"
            mild, strong = severities(rng)
            kind_c, kind_r = rng.choice(AUDIO_DEGRADATIONS, 2)
            chosen = audio_degrade(base, str(kind_c), mild, rng)
            rejected = audio_degrade(base, str(kind_r), strong, rng)
            meta = {
                "simulated": True,
                "source": source,
                "chosen_degradation": [str(kind_c), round(mild, 3)],
                "rejected_degradation": [str(kind_r), round(strong, 3)],
            }
            yield str(rng.choice(AUDIO_PROMPTS)), _flac(chosen), _flac(rejected), meta


def _flac(wave: np.ndarray) -> bytes:
    import soundfile

    out = io.BytesIO()
    peak = max(1.0, float(np.abs(wave).max()))  # never clip on write (clipping is a choice)
    soundfile.write(out, (wave / peak).astype(np.float32), AUDIO_RATE, format="FLAC")
    return out.getvalue()


# ---------------------------------------------------------------- archive


def media_archive_write(*, kind: str, split: str, pairs: int, seed: int, out: Path) -> Path:
    """Write the simulated set as an import archive at `out`; return it."""
    rng = np.random.default_rng([seed, 99])
    rows = []
    make = image_pairs if kind == "image" else audio_pairs
    folder, ext = ("img", "jpg") if kind == "image" else ("wav", "flac")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for i, (prompt, chosen, rejected, meta) in enumerate(make(split, pairs, seed)):
            names = []
            for data in (chosen, rejected):
                name = f"{folder}/{i:05d}_{rng.integers(16**8):08x}.{ext}"
                zf.writestr(name, data)
                names.append(name)
            rows.append(
                {
                    "id": f"sim-{kind}-{split}-{seed}-{i:05d}",
                    "prompt": prompt,
                    "chosen": {kind: names[0]},
                    "rejected": {kind: names[1]},
                    "metadata": {**meta, "split": split},
                }
            )
        zf.writestr("pairs.jsonl", b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=["image", "audio"], required=True)
    parser.add_argument("--split", choices=["tune", "heldout"], required=True)
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    path = media_archive_write(
        kind=args.kind, split=args.split, pairs=args.pairs, seed=args.seed, out=args.out
    )
    print(
        f"SIMULATED {args.kind} preference set ({args.split} split, seed {args.seed}): "
        f"{args.pairs} pairs, degraded copies with the less degraded preferred"
    )
    print(f"kind={args.kind} split={args.split} pairs={args.pairs} bytes={path.stat().st_size}")


if __name__ == "__main__":
    main()
