package imgsvc

/*
#include <stdint.h>
#include <stdlib.h>
#include "imgsvc.h"

// shim.c: imgsvc_service_pull with a cgo.Handle as userdata.
imgsvc_status imgsvc_go_pull(const imgsvc_service *service, const char *image, const char *auth_json,
                             uintptr_t handle, const imgsvc_cancel_token *cancel, char **out_image_id,
                             imgsvc_error **err);
*/
import "C"

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/cgo"
	"strings"
	"sync"
	"unsafe"
)

// Service is an image service on one store directory. It is safe for
// concurrent use by many goroutines.
type Service struct {
	mu  sync.RWMutex // read-held by every call; Close takes it for writing
	ptr *C.imgsvc_service
}

// Open opens (creating if needed) the store at root and starts a service
// on it. opts may be nil for the defaults.
func Open(root string, opts *Options) (*Service, error) {
	optionsJSON, err := opts.json()
	if err != nil {
		return nil, invalidArgument("open", err.Error())
	}
	croot, err := cString("open", "root", root)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(croot))
	var coptions *C.char
	if optionsJSON != "" {
		coptions = C.CString(optionsJSON)
		defer C.free(unsafe.Pointer(coptions))
	}
	var ptr *C.imgsvc_service
	var cerr *C.imgsvc_error
	if rc := C.imgsvc_service_open(croot, coptions, &ptr, &cerr); rc != 0 {
		return nil, takeError("open", rc, cerr, nil)
	}
	s := &Service{ptr: ptr}
	// A safety net for a forgotten Close, not the plan.
	runtime.SetFinalizer(s, (*Service).Close)
	return s, nil
}

// Close stops the service and frees it. It waits for calls in progress to
// return; calls after Close fail with ErrClosed. Calling it again does
// nothing.
func (s *Service) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ptr != nil {
		C.imgsvc_service_free(s.ptr)
		s.ptr = nil
		runtime.SetFinalizer(s, nil)
	}
	return nil
}

// acquire holds the service open for one call; release must be called.
func (s *Service) acquire(op string) (*C.imgsvc_service, func(), error) {
	s.mu.RLock()
	if s.ptr == nil {
		s.mu.RUnlock()
		return nil, nil, closedError(op)
	}
	return s.ptr, func() {
		s.mu.RUnlock()
		runtime.KeepAlive(s)
	}, nil
}

// List returns all images, or with a non-empty filter (a name,
// name@digest, id or id prefix) the one image it names, if any.
func (s *Service) List(filter string) ([]Image, error) {
	var cfilter *C.char
	if filter != "" {
		var err error
		if cfilter, err = cString("list", "filter", filter); err != nil {
			return nil, err
		}
		defer C.free(unsafe.Pointer(cfilter))
	}
	ptr, release, err := s.acquire("list")
	if err != nil {
		return nil, err
	}
	defer release()
	var out *C.char
	var cerr *C.imgsvc_error
	if rc := C.imgsvc_service_list(ptr, cfilter, &out, &cerr); rc != 0 {
		return nil, takeError("list", rc, cerr, nil)
	}
	text := takeString(out)
	var resp struct {
		Images []imageJSON `json:"images"`
	}
	if err := json.Unmarshal([]byte(text), &resp); err != nil {
		return nil, newError("list", codeInternal, "decoding the library's answer: "+err.Error(), nil)
	}
	images := make([]Image, len(resp.Images))
	for i, img := range resp.Images {
		images[i] = img.image()
	}
	return images, nil
}

// Status looks up the image ref names (a name, name@digest, id or an id
// prefix of at least 3 hex digits). An absent image is (nil, nil), not an
// error. verbose adds Info["info"] with the image config.
func (s *Service) Status(ref string, verbose bool) (*ImageStatus, error) {
	cref, err := cString("status", "image", ref)
	if err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(cref))
	ptr, release, err := s.acquire("status")
	if err != nil {
		return nil, err
	}
	defer release()
	var out *C.char
	var cerr *C.imgsvc_error
	if rc := C.imgsvc_service_status(ptr, cref, C.bool(verbose), &out, &cerr); rc != 0 {
		return nil, takeError("status", rc, cerr, nil)
	}
	if out == nil {
		return nil, nil
	}
	st, err := parseStatus(takeString(out))
	if err != nil {
		return nil, newError("status", codeInternal, "decoding the library's answer: "+err.Error(), nil)
	}
	return st, nil
}

// Pull pulls ref into the store and returns the image id. It stops
// promptly when ctx ends; the error then wraps ctx.Err(). A pull that
// stops receiving data for Options.ProgressTimeout fails with an error
// wrapping context.DeadlineExceeded. opts may be nil.
func (s *Service) Pull(ctx context.Context, ref string, opts *PullOptions) (string, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return "", newError("pull", codeCancelled, err.Error(), ctx)
	}
	cref, err := cString("pull", "image", ref)
	if err != nil {
		return "", err
	}
	defer C.free(unsafe.Pointer(cref))
	var cauth *C.char
	if opts != nil && opts.Auth != nil {
		b, err := json.Marshal(opts.Auth)
		if err != nil {
			return "", invalidArgument("pull", err.Error())
		}
		if cauth, err = cString("pull", "auth", string(b)); err != nil {
			return "", err
		}
		defer C.free(unsafe.Pointer(cauth))
	}

	ptr, release, err := s.acquire("pull")
	if err != nil {
		return "", err
	}
	defer release()

	// Go closures never cross into C: the callback state travels as a
	// cgo.Handle, an integer.
	var state *pullState
	var handle C.uintptr_t
	if opts != nil && opts.Progress != nil {
		state = &pullState{progress: opts.Progress}
		h := cgo.NewHandle(state)
		defer h.Delete()
		handle = C.uintptr_t(h)
	}

	// ctx ending cancels through the C token, from this goroutine's
	// watcher; the token is freed only after the watcher is gone.
	token := C.imgsvc_cancel_token_new()
	if token == nil {
		return "", newError("pull", codeInternal, "could not make a cancel token", nil)
	}
	defer C.imgsvc_cancel_token_free(token)
	stop := make(chan struct{})
	var watcher sync.WaitGroup
	watcher.Add(1)
	go func() {
		defer watcher.Done()
		select {
		case <-ctx.Done():
			C.imgsvc_cancel_token_cancel(token)
		case <-stop:
		}
	}()

	var out *C.char
	var cerr *C.imgsvc_error
	rc := C.imgsvc_go_pull(ptr, cref, cauth, handle, token, &out, &cerr)
	close(stop)
	watcher.Wait()

	if state != nil && state.panicked {
		// The callback panicked; C has returned, so raise it again here.
		C.imgsvc_string_free(out)
		C.imgsvc_error_free(cerr)
		panic(state.panicValue)
	}
	if rc != 0 {
		return "", takeError("pull", rc, cerr, ctx)
	}
	return takeString(out), nil
}

// Remove removes the image ref names, with all its names. Removing an
// image that is not there succeeds.
func (s *Service) Remove(ref string) error {
	return s.refCall("remove", ref, func(ptr *C.imgsvc_service, cref *C.char, cerr **C.imgsvc_error) C.imgsvc_status {
		return C.imgsvc_service_remove(ptr, cref, cerr)
	})
}

// Untag drops one name from its image; the image goes with its last name.
// An image id is ErrInvalidArgument, a name no image has ErrNotFound.
func (s *Service) Untag(name string) error {
	return s.refCall("untag", name, func(ptr *C.imgsvc_service, cref *C.char, cerr **C.imgsvc_error) C.imgsvc_status {
		return C.imgsvc_service_untag(ptr, cref, cerr)
	})
}

// Rootfs returns the image's unpacked layer directories, top layer first:
// the lowerdir list of an overlay mount. Layers not unpacked yet are
// unpacked now. An image the store lacks is ErrNotFound.
func (s *Service) Rootfs(ref string) ([]string, error) {
	var out *C.char
	err := s.refCall("rootfs", ref, func(ptr *C.imgsvc_service, cref *C.char, cerr **C.imgsvc_error) C.imgsvc_status {
		return C.imgsvc_service_rootfs(ptr, cref, &out, cerr)
	})
	if err != nil {
		return nil, err
	}
	var dirs []string
	if err := json.Unmarshal([]byte(takeString(out)), &dirs); err != nil {
		return nil, newError("rootfs", codeInternal, "decoding the library's answer: "+err.Error(), nil)
	}
	return dirs, nil
}

// ExportRootfs writes the image's merged root filesystem into dir, which
// must be absent (it is created) or empty. Files are hard-linked from the
// layer store where the filesystem allows: copy one before changing it in
// place.
func (s *Service) ExportRootfs(ref, dir string) error {
	cdir, err := cString("export", "dir", dir)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cdir))
	return s.refCall("export", ref, func(ptr *C.imgsvc_service, cref *C.char, cerr **C.imgsvc_error) C.imgsvc_status {
		return C.imgsvc_service_export_rootfs(ptr, cref, cdir, cerr)
	})
}

func (s *Service) refCall(op, ref string, f func(*C.imgsvc_service, *C.char, **C.imgsvc_error) C.imgsvc_status) error {
	cref, err := cString(op, "image", ref)
	if err != nil {
		return err
	}
	defer C.free(unsafe.Pointer(cref))
	ptr, release, err := s.acquire(op)
	if err != nil {
		return err
	}
	defer release()
	var cerr *C.imgsvc_error
	if rc := f(ptr, cref, &cerr); rc != 0 {
		return takeError(op, rc, cerr, nil)
	}
	return nil
}

// FsInfo reports the store's filesystem usage.
func (s *Service) FsInfo() (FilesystemUsage, error) {
	ptr, release, err := s.acquire("fsinfo")
	if err != nil {
		return FilesystemUsage{}, err
	}
	defer release()
	var out *C.char
	var cerr *C.imgsvc_error
	if rc := C.imgsvc_service_fs_info(ptr, &out, &cerr); rc != 0 {
		return FilesystemUsage{}, takeError("fsinfo", rc, cerr, nil)
	}
	usage, err := parseFsInfo(takeString(out))
	if err != nil {
		return FilesystemUsage{}, newError("fsinfo", codeInternal, "decoding the library's answer: "+err.Error(), nil)
	}
	return usage, nil
}

// Fsck checks the store's consistency: every image's blobs present with
// the size and digest recorded (each blob re-hashed), no unreferenced blobs,
// no downloads or temporary files left by a crash. With repair it also
// removes what is orphaned, corrupt blobs and the images that cannot be
// complete (pull them again), until the store is clean. Problems found are
// not an error: they are in the report.
func (s *Service) Fsck(repair bool) (FsckReport, error) {
	ptr, release, err := s.acquire("fsck")
	if err != nil {
		return FsckReport{}, err
	}
	defer release()
	var out *C.char
	var cerr *C.imgsvc_error
	if rc := C.imgsvc_service_fsck(ptr, C.bool(repair), &out, &cerr); rc != 0 {
		return FsckReport{}, takeError("fsck", rc, cerr, nil)
	}
	var report FsckReport
	if err := json.Unmarshal([]byte(takeString(out)), &report); err != nil {
		return FsckReport{}, newError("fsck", codeInternal, "decoding the library's answer: "+err.Error(), nil)
	}
	return report, nil
}

// Version is the C library's version.
func Version() string {
	return C.GoString(C.imgsvc_version())
}

// cString copies s for C; a NUL byte inside would silently cut it short,
// so it is an invalid argument instead.
func cString(op, what, s string) (*C.char, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, invalidArgument(op, fmt.Sprintf("%s contains a NUL byte", what))
	}
	return C.CString(s), nil
}

// takeString copies and frees a string the library handed out.
func takeString(p *C.char) string {
	defer C.imgsvc_string_free(p)
	return C.GoString(p)
}

// takeError turns a status code and error object into an *Error, freeing
// the object.
func takeError(op string, rc C.imgsvc_status, cerr *C.imgsvc_error, ctx context.Context) error {
	defer C.imgsvc_error_free(cerr)
	message := C.GoString(C.imgsvc_error_message(cerr))
	if message == "" {
		message = C.GoString(C.imgsvc_status_name(rc))
	}
	return newError(op, int(rc), message, ctx)
}
