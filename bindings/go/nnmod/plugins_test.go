package nnmod

import (
	"os"
	"path/filepath"
	"testing"
)

func TestPluginsListLayersByQualifiedName(t *testing.T) {
	ctx := newCtx(t)
	ps, err := ctx.Plugins()
	if err != nil {
		t.Fatal(err)
	}
	var linear *LayerInfo
	for i := range ps {
		for j := range ps[i].Layers {
			if ps[i].Layers[j].QualifiedName == "nnmod.linear" {
				linear = &ps[i].Layers[j]
			}
		}
		if ps[i].Status == OK && uint32(len(ps[i].Layers)) != ps[i].NLayers {
			t.Errorf("plugin %q: %d layers listed, NLayers %d", ps[i].Name, len(ps[i].Layers), ps[i].NLayers)
		}
	}
	if linear == nil {
		t.Fatalf("no nnmod.linear among %d plugin records", len(ps))
	}
	if linear.Name != "linear" || linear.Domain != "nnmod" || !linear.Plain || !linear.Builtin ||
		linear.Shadowed || linear.Version[0] < 1 {
		t.Errorf("nnmod.linear: %+v", *linear)
	}
}

func TestPluginsRecordAFileThatFailed(t *testing.T) {
	ctx := newCtx(t)
	bad := filepath.Join(t.TempDir(), "not_a_plugin.so")
	if err := os.WriteFile(bad, []byte("not an ELF file"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ctx.LoadPlugin(bad); err == nil {
		t.Fatal("loading a text file as a plugin succeeded")
	}
	ps, err := ctx.Plugins()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Path == bad {
			if p.Status == OK || p.Error == "" || len(p.Layers) != 0 {
				t.Errorf("failed record: %+v", p)
			}
			return
		}
	}
	t.Fatalf("no record of %s", bad)
}
