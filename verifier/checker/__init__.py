"""The fenced certificate checker (trusted core).

Stage: certificate -> valid / rejected. Trusted: yes. It imports nothing from proof search
(a test parses these files' imports): only the task loader, the network loader and exact
evaluation, the exact-number module, the error hierarchy, the certificate hash functions, z3
and cvc5. See docs/certificates.md.
"""
