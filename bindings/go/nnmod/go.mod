module nnmod.local/nnmod

go 1.19
