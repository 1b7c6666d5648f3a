package nnmod

import "testing"

// go test -bench . : one Forward+Close of ReLU on [4, 16], grad mode off
// (bench/bench_bindings.sh has the comparison with C and Rust).
func BenchmarkForwardRelu(b *testing.B) {
	ctx, err := NewContext()
	if err != nil {
		b.Fatal(err)
	}
	defer ctx.Close()
	m, err := ctx.CreateModule("relu", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	x, err := ctx.Tensor([]int64{4, 16}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	ctx.SetGradEnabled(false)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		y, err := m.Forward(x)
		if err != nil {
			b.Fatal(err)
		}
		y.Close()
	}
}

// The same through ForwardInto: one cgo call, no allocation.
func BenchmarkForwardIntoRelu(b *testing.B) {
	ctx, err := NewContext()
	if err != nil {
		b.Fatal(err)
	}
	defer ctx.Close()
	m, err := ctx.CreateModule("relu", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	x, err := ctx.Tensor([]int64{4, 16}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	ctx.SetGradEnabled(false)
	y := new(Tensor)
	defer y.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := m.ForwardInto(x, y); err != nil {
			b.Fatal(err)
		}
	}
}
