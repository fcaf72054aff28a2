package registrator

// DefaultImage is the registrator image microswarm_registrator deploys by default;
// tools/images/build.sh builds and tags it from cmd/registrator.
const DefaultImage = "microswarm/registrator:0.1.0"
