"""Selection: candidates -> tests -> execution matrix -> votes, verifier, hybrid policies -> a decision.

Policies are pure functions over recorded results (`SelectionInputs`), so any of them re-scores a run
offline. Nothing in this package may read an `EvalSpec` (hidden tests) or import `runs`.
"""
