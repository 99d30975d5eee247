module github.com/imgsvc/imgsvc/bindings/go

go 1.22
