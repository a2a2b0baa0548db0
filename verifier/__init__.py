"""cnnproof.verifier: exact networks, provers and (later) certificates.

Data flow: task -> network -> obligations -> solver -> verdict.
"""
