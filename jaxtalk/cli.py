"""The `jaxtalk` command: dispatches `jaxtalk <subcommand> ...` to the module that implements it.

Subcommands are imported lazily so that `jaxtalk generate --help` does not import Beam, and
`jaxtalk preprocess` does not import the training stack.
"""

import importlib
import sys

SUBCOMMANDS = {
  "train": ("jaxtalk.main", "run", "train a stage: --config=configs/<stage>.py --workdir=DIR"),
  "preprocess": ("data_pipelines.pipeline", "run", "videos -> ArrayRecord shards (Apache Beam)"),
  "generate": ("jaxtalk.serve.generate", "run", "portrait + speech (+ text) -> talking video"),
  "export": ("jaxtalk.serve.export_cli", "run",
             "params-only and StableHLO export of a trained stage"),
  "demo": ("jaxtalk.demo.run", "run",
           "preprocess -> train every stage -> export -> generate -> eval"),
  "eval": ("jaxtalk.evaluators.tables", "run",
           "the papers' metric tables (SSIM, LPIPS*, CSIM*, LMD, LSE-C/D*, FID*, pose FD) of "
           "exported bundles on held-out clips"),
  "app": ("jaxtalk.app.page", "run", "web page (gradio) over exported models: portrait + speech "
          "-> talking video"),
  "expression-basis": ("data_pipelines.expression_pass", "run",
                       "fit the FaceMesh expression basis (GoHD's e) over preprocessed shards "
                       "and write e, f into them (--bfm: the BFM-68 basis and f for imported "
                       "Deep3DFaceRecon coefficients)"),
}


def _usage() -> str:
  lines = ["usage: jaxtalk <subcommand> [flags]", "", "subcommands:"]
  width = max(len(name) for name in SUBCOMMANDS)
  lines += [f"  {name:<{width}} {help_}" for name, (_, _, help_) in SUBCOMMANDS.items()]
  lines += ["", "`jaxtalk <subcommand> --help` lists a subcommand's flags."]
  return "\n".join(lines)


def main(argv=None) -> int:
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(_usage())
    return 0 if len(argv) >= 2 else 2
  name = argv[1]
  if name not in SUBCOMMANDS:
    print(f"jaxtalk: unknown subcommand {name!r}\n\n{_usage()}", file=sys.stderr)
    return 2
  module_name, fn_name, _ = SUBCOMMANDS[name]
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    if e.name and (e.name == module_name or module_name.startswith(e.name + ".")):
      print(f"jaxtalk: subcommand {name!r} is not available yet ({module_name} missing)",
         file=sys.stderr)
      return 2
    raise
  # Each subcommand module exposes `run(argv: list[str]) -> int` (argv[0] is the program name).
  return int(getattr(module, fn_name)([f"jaxtalk {name}"] + argv[2:]) or 0)


if __name__ == "__main__":
  sys.exit(main())
