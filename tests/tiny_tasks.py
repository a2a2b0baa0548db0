"""Two one-row tasks on a 1 x 2 canvas, shared by the ONNX, float32 and stand-in tests."""

TINY_TASK = """name = "tiny"
description = "Two one-row features on a 1 x 2 canvas."
[canvas]
height = 1
width = 2
[pixels]
symbols = { "." = 0, "#" = 1 }
[features.a]
template = "#."
[features.b]
template = ".#"
[classes.A]
required = ["a"]
[classes.B]
required = ["b"]
"""

LR_TASK = """
name = "lr"
description = "A lit cell on the left or on the right of a 1 x 2 canvas."

[canvas]
height = 1
width = 2

[pixels]
symbols = { "." = 0, "#" = 1 }

[features.l]
template = "#."

[features.r]
template = ".#"

[classes.a]
required = ["l"]

[classes.b]
required = ["r"]
"""
