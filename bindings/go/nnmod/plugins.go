// The plugin records of a context and the layers each one exports, as
// nnm_plugin_info_get and nnm_plugin_layer_info report them (docs/abi.md,
// "Names").
package nnmod

/*
#include <nnmod/nnmod.h>
*/
import "C"

// LayerInfo is one layer of a loaded plugin, as name resolution sees it.
type LayerInfo struct {
	Name          string    // the layer's own name, "gelu"
	Domain        string    // "nnmod", "acme"; a pre-1.5 plugin's own name
	QualifiedName string    // "<domain>.<name>": always reaches this layer
	Version       [3]uint32 // major, minor, patch
	Plain         bool      // the plain name ("gelu") reaches it
	Builtin       bool      // nnmod's own library (domain "nnmod")
	Shadowed      bool      // answers to QualifiedName only: nnmod has a layer of that name
}

// PluginInfo is one plugin record: a loaded plugin, or a file that failed to
// load (Status != OK, Error says why; Layers is then empty).
type PluginInfo struct {
	Path      string
	Name      string // "" when it failed before its descriptor was read
	Status    int
	Error     string
	ABI       [2]uint16 // major, minor as the plugin declared (0 if unknown)
	NLayers   uint32
	NBackends uint32
	Layers    []LayerInfo
}

// Plugins lists every plugin record of the context (loaded and failed), in
// load order, with the layers of each loaded one. The strings are copies:
// they stay valid after the context is closed.
func (x *Context) Plugins() ([]PluginInfo, error) {
	c, err := x.live()
	if err != nil {
		return nil, err
	}
	n := uint32(C.nnm_plugin_count(c))
	out := make([]PluginInfo, 0, n)
	for i := uint32(0); i < n; i++ {
		var info C.nnm_plugin_info
		info.struct_size = C.uint32_t(C.sizeof_nnm_plugin_info)
		if err := errorOf(c, C.nnm_plugin_info_get(c, C.uint32_t(i), &info)); err != nil {
			return nil, err
		}
		p := PluginInfo{
			Path: goString(info.path), Name: goString(info.name), Status: int(info.status),
			Error: goString(info.error), ABI: [2]uint16{uint16(info.abi_major), uint16(info.abi_minor)},
			NLayers: uint32(info.n_layers), NBackends: uint32(info.n_backends),
		}
		for j := uint32(0); p.Status == OK && j < p.NLayers; j++ {
			var li C.nnm_layer_info
			li.struct_size = C.uint32_t(C.sizeof_nnm_layer_info)
			if C.nnm_plugin_layer_info(c, C.uint32_t(i), C.uint32_t(j), &li) != C.NNM_OK {
				continue
			}
			f := uint32(li.flags)
			p.Layers = append(p.Layers, LayerInfo{
				Name: goString(li.name), Domain: goString(li.domain),
				QualifiedName: goString(li.qualified_name),
				Version:       [3]uint32{uint32(li.version_major), uint32(li.version_minor), uint32(li.version_patch)},
				Plain:         f&C.NNM_LAYER_INFO_PLAIN != 0,
				Builtin:       f&C.NNM_LAYER_INFO_BUILTIN != 0,
				Shadowed:      f&C.NNM_LAYER_INFO_SHADOWED != 0,
			})
		}
		out = append(out, p)
	}
	return out, nil
}

// goString is C.GoString that maps NULL to "".
func goString(s *C.char) string {
	if s == nil {
		return ""
	}
	return C.GoString(s)
}
