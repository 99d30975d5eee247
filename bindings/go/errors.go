package imgsvc

import (
	"context"
	"errors"
)

// Sentinel errors, one per kind of the imgsvc error table. Every error this
// package returns is an *Error that matches exactly one of them (or, for
// cancellation and timeouts, a context error) with errors.Is.
var (
	ErrInvalidArgument  = errors.New("imgsvc: invalid argument")
	ErrNotFound         = errors.New("imgsvc: not found")
	ErrUnauthenticated  = errors.New("imgsvc: unauthenticated")
	ErrPermissionDenied = errors.New("imgsvc: permission denied")
	ErrUnavailable      = errors.New("imgsvc: unavailable")
	ErrIntegrity        = errors.New("imgsvc: integrity")
	ErrUnsupported      = errors.New("imgsvc: unsupported")
	ErrStorageFull      = errors.New("imgsvc: storage full")
	ErrIO               = errors.New("imgsvc: i/o")
	ErrInternal         = errors.New("imgsvc: internal")

	// ErrClosed: the Service was closed. Such errors also match
	// ErrInvalidArgument.
	ErrClosed = errors.New("imgsvc: service is closed")
)

// C status codes (include/imgsvc.h).
const (
	codeInvalidArgument  = 1
	codeNotFound         = 2
	codeUnauthenticated  = 3
	codePermissionDenied = 4
	codeUnavailable      = 5
	codeIntegrity        = 6
	codeUnsupported      = 7
	codeStorageFull      = 8
	codeIO               = 9
	codeCancelled        = 10
	codeTimeout          = 11
	codeInternal         = 12
)

// Error is a failed call: the operation, the C status code and the message.
type Error struct {
	Op      string // "open", "list", "status", "pull", "remove", "untag", "fsinfo", "fsck"
	Code    int    // the C status code, 1..12 (include/imgsvc.h)
	Message string
	wrapped []error
}

func (e *Error) Error() string {
	if e.Code == codeCancelled && len(e.wrapped) == 1 {
		// Say why: the context was cancelled, or its deadline passed.
		return "imgsvc: " + e.Op + ": " + e.Message + ": " + e.wrapped[0].Error()
	}
	return "imgsvc: " + e.Op + ": " + e.Message
}

// Unwrap gives the sentinel (or context error) the error matches.
func (e *Error) Unwrap() []error {
	return e.wrapped
}

// newError maps a C status code to an *Error; ctx (may be nil) decides
// what a cancellation wraps.
func newError(op string, code int, message string, ctx context.Context) *Error {
	e := &Error{Op: op, Code: code, Message: message}
	switch code {
	case codeInvalidArgument:
		e.wrapped = []error{ErrInvalidArgument}
	case codeNotFound:
		e.wrapped = []error{ErrNotFound}
	case codeUnauthenticated:
		e.wrapped = []error{ErrUnauthenticated}
	case codePermissionDenied:
		e.wrapped = []error{ErrPermissionDenied}
	case codeUnavailable:
		e.wrapped = []error{ErrUnavailable}
	case codeIntegrity:
		e.wrapped = []error{ErrIntegrity}
	case codeUnsupported:
		e.wrapped = []error{ErrUnsupported}
	case codeStorageFull:
		e.wrapped = []error{ErrStorageFull}
	case codeIO:
		e.wrapped = []error{ErrIO}
	case codeCancelled:
		// The context's own error: context.Canceled, or DeadlineExceeded
		// when its deadline passed.
		if ctx != nil && ctx.Err() != nil {
			e.wrapped = []error{ctx.Err()}
		} else {
			e.wrapped = []error{context.Canceled}
		}
	case codeTimeout:
		e.wrapped = []error{context.DeadlineExceeded}
	default: // codeInternal, and codes a newer library may add
		e.wrapped = []error{ErrInternal}
	}
	return e
}

func closedError(op string) *Error {
	return &Error{Op: op, Code: codeInvalidArgument, Message: "service is closed",
		wrapped: []error{ErrClosed, ErrInvalidArgument}}
}

func invalidArgument(op, message string) *Error {
	return newError(op, codeInvalidArgument, message, nil)
}
