package imgsvc

/*
#include <stdint.h>
#include "imgsvc.h"
*/
import "C"

import "runtime/cgo"

// pullState is what a progress callback needs; the C side holds it only as
// a cgo.Handle.
type pullState struct {
	progress   func(Progress)
	panicked   bool
	panicValue any
}

// imgsvcGoProgress is called by the C trampoline in shim.c, on the
// goroutine that called Pull. A panic in the user's function is recovered
// here (it must not unwind through C), cancels the pull, and is raised again
// by Pull once the C call has returned.
//
//export imgsvcGoProgress
func imgsvcGoProgress(handle C.uintptr_t, event *C.imgsvc_progress) (rc C.int32_t) {
	state := cgo.Handle(handle).Value().(*pullState)
	if state.panicked {
		return 1
	}
	defer func() {
		if r := recover(); r != nil {
			state.panicked, state.panicValue = true, r
			rc = 1
		}
	}()
	state.progress(Progress{
		Kind:   ProgressKind(event.kind),
		Image:  C.GoString(event.image),
		Digest: C.GoString(event.digest),
		Done:   uint64(event.done),
		Total:  uint64(event.total),
		Layers: int(event.layers),
	})
	return 0
}
