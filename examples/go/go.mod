module github.com/imgsvc/imgsvc/examples/go

go 1.22

require github.com/imgsvc/imgsvc/bindings/go v0.0.0

// The binding from this repository; it links ../../target/release/libimgsvc.so.
replace github.com/imgsvc/imgsvc/bindings/go => ../../bindings/go
