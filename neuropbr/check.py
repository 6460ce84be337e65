"""``python -m neuropbr.check data.root=DIR``: validate a folder dataset and list every problem.

Decodes every image fully (unlike training start-up, which reads headers and checks file
integrity without decoding), prints a report (sample counts per render folder, materials, views,
resolutions, formats, every problem as ``sample | path | problem``) and exits 1 when any problem
was found, 0 otherwise. Takes the ``data.*`` keys of ``data=folder``::

    python -m neuropbr.check data.root=/data/pbr data.num_views=3 data.renders=both

``library=DIR`` checks a material library instead (:mod:`neuropbr.data.library`): the
materials found, the file chosen for every map, every default and conversion, and every problem
as ``material | path | problem``::

    python -m neuropbr.check library=/data/ambientcg [layout=my_layout.yaml]

Writes nothing (no outputs/ folder, no log file). The scan and the report are
:mod:`neuropbr.data.check`'s; this module is the command around them.
"""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from neuropbr.config import config_dir, register_configs
from neuropbr.data.check import check_dataset, format_report
from neuropbr.utils.choices import choice


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="check")
def main(cfg: DictConfig) -> None:
    """Entry point: scan ``cfg.data.root`` deeply, print the report, exit 1 on any problem."""
    if cfg.get("library"):
        from neuropbr.data.library import format_library_report, scan_library

        library = scan_library(os.path.expanduser(str(cfg.library)), layout=cfg.get("layout"), deep=True)
        print(format_library_report(library))  # noqa: T201 - the report is the CLI's output
        sys.exit(1 if library.problems else 0)
    if OmegaConf.is_missing(cfg.data, "root"):
        print(  # noqa: T201 - CLI usage text
            "usage: python -m neuropbr.check data.root=DIR [data.num_views=3 data.renders=both]\n"
            "       python -m neuropbr.check library=DIR [layout=layout.yaml]",
            file=sys.stderr,
        )
        sys.exit(2)
    data = cfg.data
    scan = check_dataset(os.path.expanduser(str(data.root)), int(data.num_views), choice(data.renders))
    print(format_report(scan, int(data.resolution)))  # noqa: T201 - the report is the CLI's output
    sys.exit(1 if scan.problems else 0)


def cli() -> None:
    """Entry point of ``python -m neuropbr.check`` (and its alias ``python -m neuropbr.data.check``)."""
    register_configs()
    main()


if __name__ == "__main__":
    cli()
