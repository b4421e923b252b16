"""Command line: a thin layer over the Python API.

Exit codes: 0 ok, 1 a check failed (e.g. csim not bit-exact) or a tool failed,
2 bad usage or input. Errors are one line on stderr, never a traceback.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from . import __version__
from .errors import FpgacnnError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fpgacnn")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or stage messages (errors still print).")
@click.option("-v", "--verbose", is_flag=True, help="Also show TensorFlow's and hls4ml's own messages.")
def cli(quiet, verbose):
    """Trim, quantize and turn a trained Keras CNN into a bit-exact hls4ml FPGA project.

    \b
    Examples:
      fpgacnn demo                                  # digits CNN end to end
      fpgacnn build model.h5 --data data.npz --out hw_projects/cam
      fpgacnn csim hw_projects/cam --samples 200
    """
    from .progress import configure

    configure(quiet=quiet, verbose=verbose)
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:  # Keras/QKeras serialization chatter is not actionable for a user
        import warnings

        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)


@cli.command()
@click.option("--out", default="hw_projects/demo", show_default=True, type=click.Path(), help="Project directory.")
@click.option("--force", is_flag=True, help="Replace an existing project directory.")
@click.option("--seed", default=0, show_default=True)
@click.option("--epochs", default=40, show_default=True, help="Training epochs of the float model.")
@click.option("--json", "as_json", is_flag=True, help="Print report.json instead of the table.")
def demo(out, force, seed, epochs, as_json):
    """Train a small VGG on the bundled digits, then trim, quantize, generate and csim it."""
    from .demo import run_demo
    from .pipeline import summary_table

    report = run_demo(out, force=force, seed=seed, epochs=epochs, log=(lambda m: None) if as_json else _log)
    _echo_json(report) if as_json else click.echo("\n" + summary_table(report))
    if not report["csim"]["passed"]:
        sys.exit(1)


@cli.command()
@click.argument("config", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print report.json instead of the table.")
def run(config, as_json):
    """Run the pipeline described by a YAML CONFIG (see examples/).

    \b
    Example:
      fpgacnn run examples/digits.yaml
    """
    from .config import load_config
    from .job import run_job
    from .pipeline import summary_table

    cfg = load_config(config)
    report = run_job(cfg, log=None if as_json else _log)
    _echo_json(report) if as_json else click.echo("\n" + summary_table(report))
    if not report["csim"]["passed"]:
        sys.exit(1)


@cli.command()
@click.argument("model", type=click.Path())
@click.option("--data", required=True, type=click.Path(), help=".npz with x/y or x_train/y_train/x_test/y_test.")
@click.option("--out", required=True, type=click.Path(), help="Project directory to create.")
@click.option("--keep", default=0.5, show_default=True, help="Fraction of kernels kept per layer.")
@click.option("--bits", default=8, show_default=True, help="Weight/activation bit width.")
@click.option("--part", default="xc7z020clg400-1", show_default=True)
@click.option("--backend", default="Vitis", show_default=True, type=click.Choice(["Vitis", "Vivado"]))
@click.option("--epochs", default=10, show_default=True, help="Fine-tune epochs after trim and for QAT.")
@click.option("--name", default="myproject", show_default=True, help="Project / top function name.")
@click.option("--force", is_flag=True, help="Replace an existing project directory.")
@click.option("--allow-code", is_flag=True, help="Allow Lambda/custom layers to run code from the model file.")
@click.option("--json", "as_json", is_flag=True)
def build(model, data, out, keep, bits, part, backend, epochs, name, force, allow_code, as_json):
    """Run the whole pipeline on your trained MODEL (.h5/.keras/SavedModel) and DATA."""
    from .data import load_npz_split
    from .modelio import file_sha256, load_model
    from .pipeline import PipelineOptions, check_output_dir, run_pipeline, summary_table
    from .validate import check_options

    opts = PipelineOptions(keep=keep, bits=bits, part=part, backend=backend, finetune_epochs=epochs,
                           qat_epochs=epochs, name=name, force=force)
    check_options(opts)  # before loading anything: a typo in --part should not wait for TensorFlow
    check_output_dir(out, force)
    m = load_model(model, allow_code=allow_code)
    split = load_npz_split(data)
    report = run_pipeline(m, split, Path(out), opts, log=None if as_json else _log,
                          source_sha256=file_sha256(model))
    _echo_json(report) if as_json else click.echo("\n" + summary_table(report))
    if not report["csim"]["passed"]:
        sys.exit(1)


@cli.command()
@click.argument("model", type=click.Path())
@click.option("--data", required=True, type=click.Path(), help=".npz with representative images (x or x_train).")
@click.option("--keep", default=0.5, show_default=True)
@click.option("--out", required=True, type=click.Path(), help="Where to save the trimmed model (.h5 or .keras).")
@click.option("--force", is_flag=True)
def trim(model, data, keep, out, force):
    """Remove the least relevant kernels of MODEL and save the smaller model."""
    from .data import load_npz_split
    from .modelio import load_model, save_model
    from .trimming import trim as trim_model
    from .errors import OutputExistsError

    if Path(out).exists() and not force:
        raise OutputExistsError(out)
    m = load_model(model)
    split = load_npz_split(data)
    small = trim_model(m, split.x_train, keep=keep)
    save_model(small, out)
    click.echo(f"{m.count_params():,} -> {small.count_params():,} parameters; saved {out}")


@cli.command()
@click.argument("model", type=click.Path())
@click.option("--bits", default=8, show_default=True, help="Weight/bias/activation bit width.")
@click.option("--data", type=click.Path(), default=None,
              help=".npz for activation ranges and quantization-aware fine-tuning (labels optional).")
@click.option("--epochs", default=5, show_default=True, help="QAT epochs (needs labels in --data).")
@click.option("--out", required=True, type=click.Path(), help="Where to save the QKeras model (.h5 or .keras).")
@click.option("--force", is_flag=True)
def quantize(model, bits, data, epochs, out, force):
    """Convert a float MODEL to QKeras (BN folded) and optionally fine-tune it quantization-aware."""
    from .data import load_npz_split
    from .errors import OutputExistsError
    from .modelio import load_model, save_model
    from .quantization import quantize as to_qkeras

    if Path(out).exists() and not force:
        raise OutputExistsError(out)
    m = load_model(model)
    x = y = None
    if data:
        split = load_npz_split(data)
        x, y = split.x_train, split.y_train
    q = to_qkeras(m, bits=bits, x=x, y=y, epochs=epochs if y is not None else 0)
    save_model(q, out)
    click.echo(f"quantized to {bits} bits; saved {out}")


@cli.command()
@click.argument("qmodel", type=click.Path())
@click.option("--data", required=True, type=click.Path(), help=".npz whose test images become the testbench vectors.")
@click.option("--out", required=True, type=click.Path(), help="Project directory to create.")
@click.option("--samples", default=200, show_default=True, help="Test vectors written to tb_data/.")
@click.option("--part", default="xc7z020clg400-1", show_default=True)
@click.option("--backend", default="Vitis", show_default=True, type=click.Choice(["Vitis", "Vivado"]))
@click.option("--io-type", default="io_stream", show_default=True, type=click.Choice(["io_stream", "io_parallel"]))
@click.option("--clock", "clock_mhz", default=100.0, show_default=True, help="Target clock in MHz.")
@click.option("--name", default="myproject", show_default=True, help="Project / top function name.")
@click.option("--force", is_flag=True, help="Replace an existing project directory.")
@click.option("--design", "design_path", type=click.Path(), default=None,
              help="fit.json (or the --out directory) of 'fpgacnn fit': build the design it chose, with its part, "
                   "clock, input grid and per-layer reuse factors and strategies.")
@click.option("--fifo-depth", default="auto", show_default=True,
              help="io_stream FIFO depths: 'auto' (shallow where the layers form a chain), 'full' (hls4ml's: a "
                   "whole feature map) or a number.")
@click.option("--separate-activations", is_flag=True,
              help="Keep every QActivation an hls4ml layer of its own (default: a Conv/Dense that only feeds one "
                   "rounds and saturates into its type itself, which saves a process and FIFO per channel).")
def generate(qmodel, data, out, samples, part, backend, io_type, clock_mhz, name, force, design_path, fifo_depth,
             separate_activations):
    """Write the HLS project for a QKeras QMODEL (hls4ml C++ + build scripts + testbench)."""
    from .data import load_npz_split
    from .hls.generate import generate as write_project
    from .modelio import file_sha256, load_model
    from .pipeline import check_output_dir

    fifo_depth = int(fifo_depth) if fifo_depth.isdigit() else fifo_depth
    options = {"part": part, "backend": backend, "io_type": io_type, "clock_period_ns": 1000.0 / clock_mhz,
               "fifo_depth": fifo_depth, "fold_activations": not separate_activations}
    if design_path:
        options = _fit_design_options(design_path, options)
    check_output_dir(out, force)
    q = load_model(qmodel)
    split = load_npz_split(data)
    n = min(samples, len(split.x_test))
    project = write_project(q, out, x_test=split.x_test[:n], y_test=split.y_test[:n], name=name, force=force,
                            classes=split.classes, source_model_sha256=file_sha256(qmodel), **options)
    click.echo(f"wrote {project.dir} (top function {project.name}, {n} test vectors); next: fpgacnn csim {out}")


def _fit_design_options(design_path, given: dict) -> dict:
    """``generate`` options of a saved fit; an option given on the command line must agree with it."""
    from .errors import InputError
    from .estimate.commands import load_fit_design

    design, spec = load_fit_design(design_path)
    options = design.generate_options()
    ctx = click.get_current_context()
    flags = {"part": "--part", "backend": "--backend", "io_type": "--io-type", "clock_period_ns": "--clock",
             "fifo_depth": "--fifo-depth", "fold_activations": "--separate-activations"}
    params = {"clock_period_ns": "clock_mhz", "fold_activations": "separate_activations"}
    for key, flag in flags.items():
        source = ctx.get_parameter_source(params.get(key, key))
        if source == click.core.ParameterSource.COMMANDLINE and given[key] != options[key]:
            raise InputError(f"{flag} differs from the design in {design_path}; leave it out to build that design")
    return {**options, "input_type": spec, "input_bits": spec.type.width}


@cli.command("estimate")
@click.argument("model", type=click.Path())
@click.option("--part", default="xc7z020clg400-1", show_default=True, help="Catalogue name or ordering code.")
@click.option("--clock", "clock_mhz", default=100.0, show_default=True, type=float, help="Clock in MHz.")
@click.option("--bits", default=8, show_default=True, help="Bit width a float model is quantized to.")
@click.option("--reuse", default=1, show_default=True, type=int, help="Reuse factor of every layer.")
@click.option("--strategy", default="Latency", show_default=True, type=click.Choice(["Latency", "Resource"]))
@click.option("--allow-code", is_flag=True, help="Allow Lambda/custom layers to run code from the model file.")
@click.option("--json", "as_json", is_flag=True)
def estimate_cmd(model, part, clock_mhz, bits, reuse, strategy, allow_code, as_json):
    """Estimate DSP, BRAM, LUT, FF, latency and frame rate of MODEL on a part (no vendor tools)."""
    from .estimate.commands import estimate_json, estimate_model
    from .estimate.parts import get_part
    from .estimate.summary import capacity_table
    from .modelio import load_model

    get_part(part)  # an unknown part fails before the model is loaded
    est, how = estimate_model(load_model(model, allow_code=allow_code), part=part, clock_mhz=clock_mhz, bits=bits,
                              reuse=reuse, strategy=strategy)
    if as_json:
        _echo_json(estimate_json(est, how))
    else:
        click.echo(f"{how}; fpgacnn estimator, not vendor synthesis\n{capacity_table(est)}")


@cli.command("fit")
@click.argument("model", type=click.Path())
@click.option("--data", required=True, type=click.Path(), help=".npz with x/y or x_train/y_train[/x_val/y_val].")
@click.option("--part", required=True, help="Catalogue name or ordering code, e.g. xc7z020clg400-1.")
@click.option("--fps", required=True, type=float, help="Frames per second the design must sustain.")
@click.option("--clock", "clock_mhz", default=100.0, show_default=True, type=float, help="Clock in MHz.")
@click.option("--max-utilization", default=0.8, show_default=True, type=float, help="Cap on every resource.")
@click.option("--epochs", default=5, show_default=True, help="Fine-tuning (distillation) epochs per candidate.")
@click.option("--qat-epochs", type=int, default=None, help="Quantization-aware training epochs per candidate "
              "[default: --epochs].")
@click.option("--augment", type=click.Choice(["none", "shift", "flip_shift"]), default="none", show_default=True,
              help="Fine-tune on a new shifted (and flipped) view of the images every epoch.")
@click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]), default="constant", show_default=True)
@click.option("--criterion", type=click.Choice(["relevance", "relevance_weighted", "l1", "apoz", "random"]),
              default="relevance", show_default=True,
              help="How kernels are scored.")
@click.option("--allocation", type=click.Choice(["criterion", "relevance", "relevance_weighted", "l1", "apoz",
                                                 "random"]), default="criterion", show_default=True,
              help="Whose scores decide how many kernels each layer keeps; --criterion still picks which. "
                   "'random' with --cost spreads deep cuts more evenly over the layers.")
@click.option("--ranking", type=click.Choice(["layer", "global"]), default="layer", show_default=True,
              help="layer: the same fraction kept in every layer; global: one threshold over all layers.")
@click.option("--normalize", type=click.Choice(["mean", "max", "zscore", "rank", "none"]), default="mean",
              show_default=True, help="How each layer's scores are put on one scale before a global ranking; "
              "'rank' (quantiles) lets --cost alone decide how many kernels each layer keeps, graded.")
@click.option("--cost", type=click.Choice(["none", "params", "macs", "sqrt_params", "sqrt_macs"]), default="none",
              show_default=True, help="With --ranking global: rank kernels by score per (square root of) what "
              "each costs in parameters or MACs.")
@click.option("--min-kernels", type=int, default=1, show_default=True, help="Fewest kernels a layer keeps.")
@click.option("--trim-rounds", type=int, default=1, show_default=True,
              help="Re-scored cuts to reach each fine-tuned candidate (epochs spread over them).")
@click.option("--out", type=click.Path(), default=None, help="Save the chosen models and fit.json here.")
@click.option("--force", is_flag=True, help="Replace an existing --out directory.")
@click.option("--allow-code", is_flag=True, help="Allow Lambda/custom layers to run code from the model file.")
@click.option("--json", "as_json", is_flag=True)
def fit_cmd(model, data, part, fps, clock_mhz, max_utilization, epochs, qat_epochs, augment, lr_schedule, criterion,
            allocation, ranking, normalize, cost, min_kernels, trim_rounds, out, force, allow_code, as_json):
    """Find the most accurate trim level, bit width and reuse factors of MODEL that fit a part at FPS."""
    from .data import load_npz_split
    from .errors import OutputExistsError
    from .estimate.commands import save_fit
    from .estimate.fit import fit
    from .estimate.points import table_text
    from .modelio import load_model

    from .estimate.parts import get_part

    get_part(part)
    if out and Path(out).exists() and (not Path(out).is_dir() or any(Path(out).iterdir())) and not force:
        raise OutputExistsError(out)
    split = load_npz_split(data)
    has_val = split.x_val is not None and len(split.x_val) > 0
    result = fit(load_model(model, allow_code=allow_code), split.x_train, split.y_train, part, fps=fps,
                 clock_mhz=clock_mhz, max_utilization=max_utilization, x_val=split.x_val if has_val else None,
                 y_val=split.y_val if has_val else None, finetune_epochs=epochs, qat_epochs=qat_epochs,
                 log=None if as_json else _log,
                 finetune_options={"augment": None if augment == "none" else augment, "lr_schedule": lr_schedule},
                 trim_options={"criterion": criterion, "ranking": ranking, "normalize": normalize,
                               "min_kernels": min_kernels,
                               "cost": None if cost == "none" else cost, "rounds": trim_rounds,
                               "allocation": None if allocation == "criterion" else allocation})
    if out:
        save_fit(result, out, force=force)
    if as_json:
        _echo_json({k: v for k, v in result.to_dict().items() if k != "hls_config"})
    else:
        saved = (f"\nsaved {out}; next: fpgacnn generate {Path(out) / 'qmodel.h5'} --design {out} --data {data} "
                 "--out PROJECT_DIR") if out else ""
        click.echo(table_text(result.table) + "\n\n" + result.summary() + saved)


@cli.command("csim")
@click.argument("project_dir", type=click.Path())
@click.option("--samples", type=int, default=None, help="Simulate only the first N test vectors.")
@click.option("--jobs", type=int, default=None, help="Parallel testbench processes (default: all cores).")
@click.option("--json", "as_json", is_flag=True)
def csim_cmd(project_dir, samples, jobs, as_json):
    """Build the project's testbench with g++ and check it bit-exact against the QKeras model."""
    from .hls.csim import csim

    result = csim(project_dir, samples=samples, jobs=jobs)
    d = result.to_dict()
    if as_json:
        _echo_json(d)
    else:
        click.echo(f"bit-exact: {d['bit_exact']}  samples: {d['samples']}  argmax agreement: "
                   f"{d['argmax_agreement']:.4f}  accuracy: {d['accuracy']}  ({d['img_per_s']:.0f} img/s)")
    sys.exit(0 if result.passed else 1)  # passed: every check of the project's contract held


@cli.command()
@click.argument("project_dir", type=click.Path())
def report(project_dir):
    """Write report.html (self-contained, plots embedded) and report.md for a project."""
    from .report import write_report

    html_path, md_path = write_report(project_dir)
    click.echo(f"wrote {html_path} and {md_path}")


def _log(msg: str) -> None:
    from .progress import is_quiet

    if not is_quiet():
        click.echo(msg, err=True)


def main(argv=None) -> None:
    from .atomic import signals_as_exceptions
    from .errors import Terminated

    try:
        # SIGTERM/SIGHUP become an exception, so temporary outputs are cleaned up on the way out
        with signals_as_exceptions():
            cli.main(args=argv, prog_name="fpgacnn", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except FpgacnnError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Terminated as exc:
        click.echo(str(exc), err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
