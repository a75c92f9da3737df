//! Runtime test plugin: exports `gateway:provider/provider@9.9.9`, which the
//! host does not support, so loading it must fail with a clear error.

wit_bindgen::generate!({
    path: "wit",
    world: "plugin",
});

struct BadWit;

impl exports::gateway::provider::provider::Guest for BadWit {
    fn describe() -> String {
        "from the future".into()
    }
}

export!(BadWit);
