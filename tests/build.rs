//! Links libtorch (CUDA kept, rpath set) for the e2e tests and their worker binary; see scripts/torch_link.rs.
include!("../scripts/torch_link.rs");
fn main() {
    torch_link();
}
