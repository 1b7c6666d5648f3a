// The Go twin of bench/bindings/bench_bindings_c.c: Linear(16, 16) or ReLU
// on a [4, 16] input, grad mode off: Module.Forward and the output closed
// ("go"), and Module.ForwardInto ("go_into").
// `bench_bindings_go linear|relu [iters] [reps]` prints two JSON lines.
package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"syscall"
	"time"

	"nnmod.local/nnmod"
)

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench_bindings_go:", err)
		os.Exit(1)
	}
}

// cpuNs is the process's CPU time (user + system), as the C twin measures
// it (GC and runtime threads included: they are part of a Go call's cost).
func cpuNs() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		check(err)
	}
	return float64(ru.Utime.Nano() + ru.Stime.Nano())
}

func main() {
	which, iters, reps := "linear", 20000, 15
	if len(os.Args) > 1 {
		which = os.Args[1]
	}
	if len(os.Args) > 2 {
		iters, _ = strconv.Atoi(os.Args[2])
	}
	if len(os.Args) > 3 {
		reps, _ = strconv.Atoi(os.Args[3])
	}
	ctx, err := nnmod.NewContext()
	check(err)
	cfg := nnmod.Config{}
	if which == "linear" {
		cfg = nnmod.Config{"in_features": 16, "out_features": 16}
	}
	m, err := ctx.CreateModule(which, cfg)
	check(err)
	xv := make([]float32, 64)
	for i := range xv {
		xv[i] = 1
	}
	x, err := ctx.Tensor([]int64{4, 16}, xv)
	check(err)
	ctx.SetGradEnabled(false)
	// "go": y, err := m.Forward(x); y.Close() (a new *Tensor each call);
	// "go_into": m.ForwardInto(x, y) (one cgo call, no allocation).
	y := new(nnmod.Tensor)
	variants := []struct {
		lang string
		call func()
	}{
		{"go", func() {
			y, err := m.Forward(x)
			check(err)
			y.Close()
		}},
		{"go_into", func() { check(m.ForwardInto(x, y)) }},
	}
	for _, v := range variants {
		measure(v.lang, which, iters, reps, v.call)
	}
	y.Close()
	x.Close()
	m.Close()
	ctx.Close()
}

func measure(lang, which string, iters, reps int, call func()) {
	for i := 0; i < iters/10+100; i++ {
		call()
	}
	ns, wall := make([]float64, reps), make([]float64, reps)
	for r := range ns {
		t0, c0 := time.Now(), cpuNs()
		for i := 0; i < iters; i++ {
			call()
		}
		ns[r] = (cpuNs() - c0) / float64(iters)
		wall[r] = float64(time.Since(t0).Nanoseconds()) / float64(iters)
	}
	sort.Float64s(ns)
	sort.Float64s(wall)
	fmt.Printf("{\"bench\": \"bindings_call\", \"lang\": \"%s\", \"module\": \"%s\", \"input\": [4, 16], \"value\": %.1f, \"unit\": \"ns\", \"clock\": \"process_cpu\", \"wall\": %.1f, \"iters\": %d, \"reps\": %d}\n",
		lang, which, ns[reps/2], wall[reps/2], iters, reps)
}
