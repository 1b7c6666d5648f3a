// The third-party plugins from Go (tests/install/stranger), from
// docs/bindings.md's Go section alone: LoadPlugin, CreateModule with a
// Config, Forward, a gradient through Backward, Save and Load.
//
// usage: stranger_go WORKDIR PLUGIN.so...
package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"

	"nnmod.local/nnmod"
)

func run(work string, plugins []string) error {
	ctx, err := nnmod.NewContext()
	if err != nil {
		return err
	}
	defer ctx.Close()
	for _, p := range plugins {
		if err := ctx.LoadPlugin(p); err != nil {
			return err
		}
	}
	xs := []float32{-1.5, -0.25, 0.5, 1.0, 2.0, 0.125}
	for _, req := range []string{"stranger.scaled_tanh", "stranger.scaled_tanh_auto"} {
		m, err := ctx.CreateModule(req, nnmod.Config{"init_scale": 1.5})
		if err != nil {
			return err
		}
		x, err := ctx.Tensor([]int64{2, 3}, xs)
		if err != nil {
			return err
		}
		if err := x.SetRequiresGrad(true); err != nil {
			return err
		}
		y, err := m.Forward(x)
		if err != nil {
			return err
		}
		ys, err := y.Data()
		if err != nil {
			return err
		}
		s, err := y.Sum()
		if err != nil {
			return err
		}
		if err := s.Backward(); err != nil {
			return err
		}
		g, err := x.Grad().Data()
		if err != nil {
			return err
		}
		for i, v := range xs {
			t := math.Tanh(float64(v))
			if math.Abs(float64(ys[i])-1.5*t) > 1e-6 || math.Abs(float64(g[i])-1.5*(1-t*t)) > 1e-5 {
				return fmt.Errorf("%s: y[%d] = %g, grad %g", req, i, ys[i], g[i])
			}
		}
		fmt.Printf("%s: %s ok\n", req, m)
		m.Close()
	}
	// a buffer updated in training, saved and loaded
	m, err := ctx.CreateModule("stranger.track_mean", nnmod.Config{"num_features": 3, "momentum": 0.5})
	if err != nil {
		return err
	}
	defer m.Close()
	x, _ := ctx.Tensor([]int64{2, 3}, xs)
	if _, err := m.Forward(x); err != nil {
		return err
	}
	path := filepath.Join(work, "track_mean_go.safetensors")
	if err := m.Save(path, map[string]string{"from": "go"}); err != nil {
		return err
	}
	m2, err := ctx.CreateModule("stranger.track_mean", nnmod.Config{"num_features": 3})
	if err != nil {
		return err
	}
	defer m2.Close()
	if _, err := m2.Load(path, true); err != nil {
		return err
	}
	sd, err := m2.StateDict()
	if err != nil {
		return err
	}
	defer sd.Close()
	rm, err := sd.Get("running_mean").Data()
	if err != nil {
		return err
	}
	nbt, err := sd.Get("num_batches_tracked").Item()
	if err != nil {
		return err
	}
	want := []float32{-0.125, 0.4375, 0.15625} // 0.5 * the batch mean
	for i := range want {
		if math.Abs(float64(rm[i]-want[i])) > 1e-6 {
			return fmt.Errorf("running_mean %v, want %v", rm, want)
		}
	}
	if nbt != 1 {
		return fmt.Errorf("num_batches_tracked %g, want 1", nbt)
	}
	fmt.Println("stranger_go: all checks passed")
	return nil
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: stranger_go WORKDIR PLUGIN.so...")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
