module nnmod.local/examples/mlp

go 1.19

require nnmod.local/nnmod v0.0.0

replace nnmod.local/nnmod => ../../../bindings/go/nnmod
