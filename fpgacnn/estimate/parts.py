"""FPGA parts catalogue: the resources a design is checked against.

Numbers are the device totals from the vendor data sheets (programmable-logic side
only for the SoCs):

- Zynq-7000: DS190 "Zynq-7000 SoC Data Sheet: Overview", table 1 (Logic Cells,
  LUTs, flip-flops, block RAM in 36 Kb blocks, DSP slices).
- Artix-7: DS180 "7 Series FPGAs Data Sheet: Overview", table 5.
- Zynq UltraScale+ MPSoC: DS891 "Zynq UltraScale+ MPSoC Data Sheet: Overview",
  table 1 (CG/EG/EV devices: system logic cells, CLB LUTs, CLB flip-flops, block RAM
  in 36 Kb blocks, UltraRAM blocks, DSP slices).
- Alveo U250 (XCU250): DS962 "Alveo U250 Data Center Accelerator Card Data Sheet"
  and DS923 "Virtex UltraScale+ FPGA Data Sheet" (same die as the VU13P); the totals
  also match the "Available" row of the Vivado HLS reports in
  ``shared/reference-reports``.

BRAM is counted in 18 Kb halves (BRAM_18K, what Vivado HLS reports): one 36 Kb block
is two BRAM_18K. 7-series parts have DSP48E1 slices (25x18 multiplier), UltraScale+
parts DSP48E2 (27x18).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from fpgacnn.errors import InputError

RESOURCES = ("DSP", "BRAM_18K", "LUT", "FF", "URAM")


@dataclass(frozen=True)
class Part:
    """One FPGA's programmable-logic resources.

    ``Part("my-board", dsp=100, bram_18k=200, lut=30000, ff=60000)`` makes a custom part.
    """

    name: str
    dsp: int
    bram_18k: int
    lut: int
    ff: int
    uram: int = 0
    dsp_type: str = "DSP48E1"
    family: str = "custom"

    def __post_init__(self):
        for field in ("dsp", "bram_18k", "lut", "ff", "uram"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InputError(f"part '{self.name}': {field} must be a non-negative integer, got {value!r}")
        if self.dsp_type not in ("DSP48E1", "DSP48E2"):
            raise InputError(f"part '{self.name}': dsp_type must be DSP48E1 or DSP48E2, got {self.dsp_type!r}")

    def capacity(self) -> dict:
        """Resources under the keys an ``Estimate`` uses."""
        return {"DSP": self.dsp, "BRAM_18K": self.bram_18k, "LUT": self.lut, "FF": self.ff, "URAM": self.uram}

    @property
    def multiplier_width(self) -> tuple[int, int]:
        """Signed operand widths of one DSP slice's multiplier (A x B)."""
        return (27, 18) if self.dsp_type == "DSP48E2" else (25, 18)

    def to_dict(self) -> dict:
        return asdict(self)


def _p(name, lut, ff, bram36, dsp, uram=0, dsp_type="DSP48E1", family=""):
    return Part(name=name, dsp=dsp, bram_18k=2 * bram36, lut=lut, ff=ff, uram=uram, dsp_type=dsp_type, family=family)


_CATALOGUE = [
    # Zynq-7000 (DS190)
    _p("xc7z007s", 14_400, 28_800, 50, 66, family="Zynq-7000"),
    _p("xc7z010", 17_600, 35_200, 60, 80, family="Zynq-7000"),
    _p("xc7z014s", 40_600, 81_200, 107, 170, family="Zynq-7000"),
    _p("xc7z015", 46_200, 92_400, 95, 160, family="Zynq-7000"),
    _p("xc7z020", 53_200, 106_400, 140, 220, family="Zynq-7000"),
    _p("xc7z030", 78_600, 157_200, 265, 400, family="Zynq-7000"),
    _p("xc7z045", 218_600, 437_200, 545, 900, family="Zynq-7000"),
    # Artix-7 (DS180)
    _p("xc7a35t", 20_800, 41_600, 50, 90, family="Artix-7"),
    _p("xc7a50t", 32_600, 65_200, 75, 120, family="Artix-7"),
    _p("xc7a100t", 63_400, 126_800, 135, 240, family="Artix-7"),
    _p("xc7a200t", 134_600, 269_200, 365, 740, family="Artix-7"),
    # Zynq UltraScale+ MPSoC (DS891)
    _p("xczu2eg", 47_232, 94_464, 150, 240, dsp_type="DSP48E2", family="Zynq UltraScale+"),
    _p("xczu3eg", 70_560, 141_120, 216, 360, dsp_type="DSP48E2", family="Zynq UltraScale+"),
    _p("xczu5ev", 117_120, 234_240, 144, 1_248, uram=64, dsp_type="DSP48E2", family="Zynq UltraScale+"),
    _p("xczu7ev", 230_400, 460_800, 312, 1_728, uram=96, dsp_type="DSP48E2", family="Zynq UltraScale+"),
    _p("xczu9eg", 274_080, 548_160, 912, 2_520, dsp_type="DSP48E2", family="Zynq UltraScale+"),
    # Alveo U250 (DS962 / DS923)
    _p("xcu250", 1_728_000, 3_456_000, 2_688, 12_288, uram=1_280, dsp_type="DSP48E2", family="Alveo"),
]

PARTS: dict[str, Part] = {p.name: p for p in _CATALOGUE}


def known_parts() -> list[str]:
    return sorted(PARTS)


def get_part(part: str | Part | None) -> Part:
    """Look a part up by its base name or a full ordering code.

    ``xc7z020clg400-1`` -> xc7z020, ``xcu250-figd2104-2L-e`` -> xcu250,
    ``xczu9eg-ffvb1156-2-e`` -> xczu9eg. A ``Part`` is returned as is.
    """
    if isinstance(part, Part):
        return part
    if not isinstance(part, str) or not part.strip():
        raise InputError(f"part must be a part name such as 'xc7z020clg400-1' or a Part, got {part!r}")
    key = part.strip().lower()
    if key in PARTS:
        return PARTS[key]
    # Longest catalogue name that the ordering code starts with; the character after it
    # must not continue the device number (xc7z0200 is not xc7z020).
    best = None
    for name in PARTS:
        if key.startswith(name) and not re.match(r"\d", key[len(name):len(name) + 1]):
            if best is None or len(name) > len(best):
                best = name
    if best is None:
        raise InputError(f"unknown part '{part}'; known parts: {', '.join(known_parts())} "
                         "(or pass Part(name, dsp=..., bram_18k=..., lut=..., ff=...))")
    return PARTS[best]
