"""cnnproof.constructions: tasks (the generative model) and the networks built from them."""
