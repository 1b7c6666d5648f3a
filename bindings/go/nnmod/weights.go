package nnmod

/*
#include <stdlib.h>
#include <nnmod/nnmod.h>
*/
import "C"

import (
	"fmt"
	"runtime"
	"sort"
	"unsafe"
)

// LoadReport is what a load found that did not fit (PyTorch's
// _IncompatibleKeys, plus shape or dtype mismatches such as
// "fc1.weight: file [2, 3] vs module [3, 2]").
type LoadReport struct {
	Missing    []string // keys the module has and the file (or dict) lacks
	Unexpected []string // keys the file (or dict) has and the module lacks
	Mismatched []string
}

// Empty is true when every key fitted.
func (r LoadReport) Empty() bool {
	return len(r.Missing) == 0 && len(r.Unexpected) == 0 && len(r.Mismatched) == 0
}

// takeReport copies and frees a report the library handed over (nil: empty).
func takeReport(rep *C.nnm_load_report) LoadReport {
	var r LoadReport
	if rep == nil {
		return r
	}
	list := func(p **C.char, n C.uint32_t) []string {
		if p == nil || n == 0 {
			return nil
		}
		out := make([]string, int(n))
		for i, s := range unsafe.Slice(p, int(n)) {
			out[i] = C.GoString(s)
		}
		return out
	}
	r.Missing = list(rep.missing, rep.n_missing)
	r.Unexpected = list(rep.unexpected, rep.n_unexpected)
	r.Mismatched = list(rep.mismatched, rep.n_mismatched)
	C.nnm_load_report_free(rep)
	return r
}

// cMeta is user metadata as the C writers take it: C strings (freed by
// free) and an array of nnm_kv over them, keys sorted so a file's bytes do
// not depend on map order.
type cMeta struct {
	kv []C.nnm_kv
}

func newMeta(m map[string]string) cMeta {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var x cMeta
	for _, k := range keys {
		x.kv = append(x.kv, C.nnm_kv{key: C.CString(k), value: C.CString(m[k])})
	}
	return x
}

func (x cMeta) n() C.uint32_t { return C.uint32_t(len(x.kv)) }

// ptr is the array (a Go slice holding only C pointers may go to C), or nil.
func (x cMeta) ptr() *C.nnm_kv {
	if len(x.kv) == 0 {
		return nil
	}
	return &x.kv[0]
}

func (x cMeta) free() {
	for _, kv := range x.kv {
		C.free(unsafe.Pointer(kv.key))
		C.free(unsafe.Pointer(kv.value))
	}
}

func checkNUL(what string, ss ...string) error {
	for _, s := range ss {
		for i := 0; i < len(s); i++ {
			if s[i] == 0 {
				return NewError(EInvalid, fmt.Sprintf("%s %q contains a NUL byte", what, s))
			}
		}
	}
	return nil
}

func checkMeta(m map[string]string) error {
	for k, v := range m {
		if err := checkNUL("metadata", k, v); err != nil {
			return err
		}
	}
	return nil
}

// Save writes every parameter and persistent buffer under its state dict
// key (PyTorch's) to a safetensors file, atomically. metadata (may be nil)
// goes into the file's __metadata__, besides "nnmod_version" and, for a
// root built from a manifest, the manifest's hash.
func (x *Module) Save(path string, metadata map[string]string) error {
	m, err := x.live()
	if err != nil {
		return err
	}
	if err := checkNUL("path", path); err != nil {
		return err
	}
	if err := checkMeta(metadata); err != nil {
		return err
	}
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	meta := newMeta(metadata)
	defer meta.free()
	return errorOf(x.c, C.nnm_module_save(m, cp, meta.n(), meta.ptr()))
}

// Load reads a safetensors state dict into the module's parameters and
// persistent buffers, on its device. A shape that does not fit fails
// (EShape) strict or not; with strict, a missing or unexpected key fails
// too (ENotFound). Nothing changes on a refusal, and the report lists every
// key that did not fit (the error's message names the first few). Not
// strict, the matching keys load and the report lists the rest.
func (x *Module) Load(path string, strict bool) (LoadReport, error) {
	m, err := x.live()
	if err != nil {
		return LoadReport{}, err
	}
	if err := checkNUL("path", path); err != nil {
		return LoadReport{}, err
	}
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	var rep *C.nnm_load_report
	st := C.nnm_module_load(m, cp, cbool(strict), &rep)
	err = errorOf(x.c, st) // the message first: nothing may overwrite it
	return takeReport(rep), err
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// StateDict is an in-memory state dict: name -> tensor in insertion order,
// like the OrderedDict of PyTorch's state_dict(). It holds a reference on
// each of its tensors; Close frees it (idempotent).
type StateDict struct {
	sd  *C.nnm_state_dict
	c   *C.nnm_ctx
	ctx *Context
}

func newStateDict(ctx *Context, c *C.nnm_ctx, sd *C.nnm_state_dict) *StateDict {
	x := &StateDict{sd: sd, c: c, ctx: ctx}
	runtime.SetFinalizer(x, func(x *StateDict) {
		if sd := x.sd; sd != nil {
			x.ctx.queue(func() { C.nnm_state_dict_free(sd) })
		}
	})
	return x
}

// NewStateDict makes an empty state dict, to fill with Set.
func (x *Context) NewStateDict() (*StateDict, error) {
	c, err := x.live()
	if err != nil {
		return nil, err
	}
	var sd *C.nnm_state_dict
	if st := C.nnm_state_dict_new(c, &sd); st != C.NNM_OK {
		return nil, errorOf(c, st)
	}
	return newStateDict(x, c, sd), nil
}

// StateDict is m.state_dict(): every parameter and persistent buffer under
// its dotted key, as tensors that share the module's storage and carry no
// autograd (writing into one writes into the module).
func (x *Module) StateDict() (*StateDict, error) {
	m, err := x.live()
	if err != nil {
		return nil, err
	}
	var sd *C.nnm_state_dict
	if st := C.nnm_module_state_dict(m, &sd); st != C.NNM_OK {
		return nil, errorOf(x.c, st)
	}
	return newStateDict(x.ctx, x.c, sd), nil
}

// LoadStateDict is m.load_state_dict(sd, strict), with the rules of Load.
// The data is copied; sd is not kept.
func (x *Module) LoadStateDict(sd *StateDict, strict bool) (LoadReport, error) {
	m, err := x.live()
	if err != nil {
		return LoadReport{}, err
	}
	d, err := sd.live()
	if err != nil {
		return LoadReport{}, err
	}
	var rep *C.nnm_load_report
	st := C.nnm_module_load_state_dict(m, d, cbool(strict), &rep)
	err = errorOf(x.c, st)
	return takeReport(rep), err
}

func (x *StateDict) live() (*C.nnm_state_dict, error) {
	if x == nil || x.sd == nil {
		return nil, NewError(EState, "the state dict is closed")
	}
	x.ctx.collect()
	return x.sd, nil
}

// Close frees the dict and its references. Idempotent.
func (x *StateDict) Close() error {
	if x.sd != nil {
		x.ctx.collect()
		C.nnm_state_dict_free(x.sd)
		x.sd = nil
		runtime.SetFinalizer(x, nil)
	}
	return nil
}

// Len is the number of entries (0 when closed).
func (x *StateDict) Len() int {
	if x == nil || x.sd == nil {
		return 0
	}
	return int(C.nnm_state_dict_count(x.sd))
}

// Set is sd[name] = t: the dict takes its own reference on t (an existing
// name keeps its place). t must be of the dict's context.
func (x *StateDict) Set(name string, t *Tensor) error {
	d, err := x.live()
	if err != nil {
		return err
	}
	if t == nil || t.t == nil {
		return NewError(EInvalid, name+": nil or closed tensor")
	}
	if t.c != x.c {
		return NewError(EInvalid, name+": the tensor is of another context")
	}
	if err := checkNUL("name", name); err != nil {
		return err
	}
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	return errorOf(x.c, C.nnm_state_dict_set(d, cn, t.t))
}

// Get is the tensor under name (a new reference: Close it), or nil.
func (x *StateDict) Get(name string) *Tensor {
	d, err := x.live()
	if err != nil || checkNUL("name", name) != nil {
		return nil
	}
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	t := C.nnm_state_dict_get(d, cn)
	if t == nil {
		return nil
	}
	C.nnm_tensor_retain(t)
	return newTensor(x.ctx, x.c, t)
}

// Keys are the names, in order.
func (x *StateDict) Keys() []string {
	d, err := x.live()
	if err != nil {
		return nil
	}
	n := int(C.nnm_state_dict_count(d))
	keys := make([]string, 0, n)
	for i := 0; i < n; i++ {
		var name *C.char
		if C.nnm_state_dict_entry(d, C.uint32_t(i), &name, nil) != C.NNM_OK {
			break
		}
		keys = append(keys, C.GoString(name))
	}
	return keys
}

// Entries are the (name, tensor) pairs in order; each Tensor is a new
// reference (Close it).
func (x *StateDict) Entries() []NamedTensor {
	d, err := x.live()
	if err != nil {
		return nil
	}
	n := int(C.nnm_state_dict_count(d))
	res := make([]NamedTensor, 0, n)
	for i := 0; i < n; i++ {
		var name *C.char
		var t *C.nnm_tensor
		if C.nnm_state_dict_entry(d, C.uint32_t(i), &name, &t) != C.NNM_OK || t == nil {
			break
		}
		C.nnm_tensor_retain(t)
		res = append(res, NamedTensor{C.GoString(name), newTensor(x.ctx, x.c, t)})
	}
	return res
}

// SaveCheckpoint writes m's state dict, opt's state and hyper-parameters
// (opt nil: the weights only) and metadata (may be nil; keys must not start
// with "nnmod") to one safetensors file, atomically, for resuming training.
// Every parameter of opt must be in m.
func SaveCheckpoint(path string, m *Module, opt *Optimizer, metadata map[string]string) error {
	mm, err := m.live()
	if err != nil {
		return err
	}
	var o *C.nnm_optim
	if opt != nil {
		if o, err = opt.live(); err != nil {
			return err
		}
	}
	if err := checkNUL("path", path); err != nil {
		return err
	}
	if err := checkMeta(metadata); err != nil {
		return err
	}
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	meta := newMeta(metadata)
	defer meta.free()
	return errorOf(m.c, C.nnm_checkpoint_save(cp, mm, o, nil, meta.n(), meta.ptr()))
}

// LoadCheckpoint restores what SaveCheckpoint wrote into m (strict on its
// keys) and opt (of the same kind over the same parameters and groups; its
// hyper-parameters, step counts and state become the file's), so training
// resumes as if never interrupted. opt nil: the weights alone load. Nothing
// changes on failure.
func LoadCheckpoint(path string, m *Module, opt *Optimizer) error {
	mm, err := m.live()
	if err != nil {
		return err
	}
	var o *C.nnm_optim
	if opt != nil {
		if o, err = opt.live(); err != nil {
			return err
		}
	}
	if err := checkNUL("path", path); err != nil {
		return err
	}
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	return errorOf(m.c, C.nnm_checkpoint_load(cp, mm, o))
}

// FileMetadata reads the __metadata__ of a safetensors file (a checkpoint
// or a saved module): the user's pairs and nnmod's own ("nnmod_version", ...).
func (x *Context) FileMetadata(path string) (map[string]string, error) {
	c, err := x.live()
	if err != nil {
		return nil, err
	}
	if err := checkNUL("path", path); err != nil {
		return nil, err
	}
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	var st *C.nnm_safetensors
	if s := C.nnm_safetensors_open(c, cp, &st); s != C.NNM_OK {
		return nil, errorOf(c, s)
	}
	defer C.nnm_safetensors_close(st)
	n := int(C.nnm_safetensors_metadata_count(st))
	out := make(map[string]string, n)
	for i := 0; i < n; i++ {
		var k, v *C.char
		if s := C.nnm_safetensors_metadata(st, C.uint32_t(i), &k, &v); s != C.NNM_OK {
			return nil, errorOf(c, s)
		}
		out[C.GoString(k)] = C.GoString(v)
	}
	return out, nil
}
