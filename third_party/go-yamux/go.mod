module github.com/libp2p/go-yamux/v5

go 1.23

require (
	github.com/libp2p/go-buffer-pool v0.0.2
	github.com/stretchr/testify v1.7.0
)

require (
	github.com/davecgh/go-spew v1.1.0 // indirect
	github.com/pmezard/go-difflib v1.0.0 // indirect
	gopkg.in/yaml.v3 v3.0.0-20200313102051-9f266ea9e77c // indirect
)
