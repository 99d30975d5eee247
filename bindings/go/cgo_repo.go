//go:build !imgsvc_pkgconfig

package imgsvc

// The library as `cargo build --release` leaves it in this repository; the
// rpath lets test binaries and programs run without LD_LIBRARY_PATH.

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -L${SRCDIR}/../../target/release -Wl,-rpath,${SRCDIR}/../../target/release -limgsvc
*/
import "C"
