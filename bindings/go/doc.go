// Package imgsvc is the Go binding of imgsvc, an embeddable container image
// service: pull images from registries (with progress and context
// cancellation), list them, look one up, remove them, and report the
// store's filesystem usage, in the terms of the CRI ImageService.
//
// It calls the C library libimgsvc through cgo. Inside the imgsvc
// repository, after `cargo build --release`, `go build` and `go test` find
// the library in ../../target/release with no install step (the binary
// records that directory as its rpath). Against an installed library
// (scripts/install-c.sh PREFIX), build with `-tags imgsvc_pkgconfig` and
// PKG_CONFIG_PATH set.
//
// Options name the registry configuration files to read (registries.conf,
// auth.json, Docker's config.json, a certs.d root); none is read unless
// named, or unless Options.SystemRegistryConfig asks for the usual
// locations. Service.Fsck checks (and repairs) the store.
//
// A *Service is safe for concurrent use by many goroutines. Errors match the
// exported sentinels with errors.Is (ErrNotFound, ErrInvalidArgument, ...);
// a cancelled pull's error wraps ctx.Err() and a pull that stopped making
// progress wraps context.DeadlineExceeded. Use errors.As with *Error for the
// C status code and message.
package imgsvc
