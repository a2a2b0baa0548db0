"""Running one SMT-LIB2 text through z3 and cvc5. Trusted: yes (checker).

Stage: obligation text -> "unsat" / "sat" / "unknown" per solver. Both solvers read the same
text; the checker accepts an obligation only when both say unsat.
"""

from __future__ import annotations

import cvc5
import z3


def z3_version() -> str:
    return f"z3 {z3.get_version_string()}"


def cvc5_version() -> str:
    tm = cvc5.TermManager()
    v = cvc5.Solver(tm).getVersion()
    return "cvc5 " + (v.decode() if isinstance(v, bytes) else str(v))


def solve_z3(text: str) -> str:
    s = z3.Solver()
    s.from_string(text)
    return str(s.check())


def solve_cvc5(text: str) -> str:
    tm = cvc5.TermManager()
    slv = cvc5.Solver(tm)
    slv.setOption("produce-models", "false")
    sm = cvc5.SymbolManager(tm)
    parser = cvc5.InputParser(slv, sm)
    parser.setStringInput(cvc5.InputLanguage.SMT_LIB_2_6, text, "obligation")
    result = "unknown"
    while True:
        cmd = parser.nextCommand()
        if cmd.isNull():
            break
        out = cmd.invoke(slv, sm)
        if out and out.strip() in ("sat", "unsat", "unknown"):
            result = out.strip()
    return result


def both_unsat(text: str) -> str | None:
    """None when z3 and cvc5 both answer unsat; otherwise what went wrong, in words."""
    try:
        rz = solve_z3(text)
    except z3.Z3Exception as e:
        rz = f"error ({e})"
    try:
        rc = solve_cvc5(text)
    except Exception as e:  # cvc5 raises RuntimeError on parse errors
        rc = f"error ({e})"
    if rz == rc == "unsat":
        return None
    if {rz, rc} == {"sat", "unsat"}:
        return f"solver disagreement: z3 says {rz}, cvc5 says {rc}"
    if "sat" in (rz, rc):
        return f"the lemma is false: a solver found a violation (z3 {rz}, cvc5 {rc})"
    return f"solver could not confirm (z3 {rz}, cvc5 {rc})"
