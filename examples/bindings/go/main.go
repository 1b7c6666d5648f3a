// examples/bindings/go: the reference program of examples/bindings/c in Go;
// prints exactly what the C one prints (ctest example_go).
//
//	go run . ../../manifests/mlp.json
package main

import (
	"fmt"
	"math"
	"os"
	"strings"

	"nnmod.local/nnmod"
)

func shape(t *nnmod.Tensor) string {
	var parts []string
	for _, d := range t.Shape() {
		parts = append(parts, fmt.Sprint(d))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// sums: elements summed in order as float64, and their absolute values.
func sums(t *nnmod.Tensor) (float64, float64, error) {
	v, err := t.Data()
	if err != nil {
		return 0, 0, err
	}
	var s, a float64
	for _, x := range v {
		s += float64(x)
		a += math.Abs(float64(x))
	}
	return s, a, nil
}

func meanSquare(y *nnmod.Tensor) (*nnmod.Tensor, error) {
	sq, err := y.Mul(y)
	if err != nil {
		return nil, err
	}
	defer sq.Close()
	return sq.Mean()
}

func run(manifest string) error {
	ctx, err := nnmod.NewContext()
	if err != nil {
		return err
	}
	defer ctx.Close()
	model, err := ctx.LoadManifest(manifest)
	if err != nil {
		return err
	}
	defer model.Close()
	fmt.Printf("model %s, %d parameters\n", model.Type(), model.NumParams())

	// x[i] = ((5 i) mod 11 - 5) / 8: exact in f32, the same in every language
	xv := make([]float32, 8)
	for i := range xv {
		xv[i] = float32((i*5)%11-5) / 8
	}
	x, err := ctx.Tensor([]int64{2, 4}, xv)
	if err != nil {
		return err
	}
	defer x.Close()
	fmt.Printf("input %s\n", shape(x))

	hook, err := ctx.RegisterForwardHook(func(c *nnmod.ForwardHookCall) error {
		path := c.Module.Path()
		if path == "" {
			path = "(root)"
		}
		var shapes string
		for _, o := range c.Outputs {
			shapes += shape(o)
		}
		fmt.Printf("hook %s (%s) -> %s\n", path, c.Module.Type(), shapes)
		return nil
	})
	if err != nil {
		return err
	}
	y, err := model.Forward(x)
	hook.Remove()
	hook.Close()
	if err != nil {
		return err
	}
	defer y.Close()

	yv, err := y.Data()
	if err != nil {
		return err
	}
	fmt.Printf("output %s\n", shape(y))
	for r := 0; r < 2; r++ {
		fmt.Printf("  %.6f %.6f %.6f\n", yv[r*3], yv[r*3+1], yv[r*3+2])
	}

	loss, err := meanSquare(y)
	if err != nil {
		return err
	}
	defer loss.Close()
	l, err := loss.Item()
	if err != nil {
		return err
	}
	fmt.Printf("loss %.6f\n", l)
	if err := loss.Backward(); err != nil {
		return err
	}
	params, err := model.NamedParameters()
	if err != nil {
		return err
	}
	for _, p := range params {
		g := p.Tensor.Grad()
		if g == nil {
			return fmt.Errorf("%s has no gradient after backward", p.Name)
		}
		s, a, err := sums(g)
		g.Close()
		if err != nil {
			return err
		}
		fmt.Printf("grad %s %s sum %.6f abs %.6f\n", p.Name, shape(p.Tensor), s, a)
	}

	const lr = 0.1
	opt, err := nnmod.SGD(model, lr, 0, 0, 0, false)
	if err != nil {
		return err
	}
	defer opt.Close()
	if err := opt.Step(); err != nil {
		return err
	}
	fmt.Printf("sgd step lr %.6f\n", lr)
	for _, p := range params {
		s, a, err := sums(p.Tensor)
		if err != nil {
			return err
		}
		fmt.Printf("param %s sum %.6f abs %.6f\n", p.Name, s, a)
		p.Tensor.Close()
	}

	y2, err := model.Forward(x)
	if err != nil {
		return err
	}
	defer y2.Close()
	loss2, err := meanSquare(y2)
	if err != nil {
		return err
	}
	defer loss2.Close()
	l2, err := loss2.Item()
	if err != nil {
		return err
	}
	fmt.Printf("loss after step %.6f\n", l2)
	return nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: mlp_example <manifest>")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "mlp_example:", err)
		os.Exit(1)
	}
}
