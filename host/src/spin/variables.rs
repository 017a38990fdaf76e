//! `fermyon:spin/variables`: the component's variables, resolved from the manifest as Spin does
//! (`SPIN_VARIABLE_<NAME>` in the environment, else the application variable's default).

use std::collections::BTreeMap;

use super::bindings::fermyon::spin::variables::{Error, Host};
use super::SpinView;

/// A component's resolved variables (never printed: they hold secrets).
pub struct Variables(BTreeMap<String, String>);

impl std::fmt::Debug for Variables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Variables {
    /// These values, by variable name.
    pub fn new(values: BTreeMap<String, String>) -> Self {
        Self(values)
    }
}

/// Spin's rule for variable names: lowercase ASCII letters, digits and `_`, starting with a letter.
fn is_valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Host for SpinView<'_> {
    fn get(&mut self, name: String) -> Result<String, Error> {
        if !is_valid_name(&name) {
            return Err(Error::InvalidName(name));
        }
        self.host
            .variables
            .0
            .get(&name)
            .cloned()
            .ok_or(Error::Undefined(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spin::{SpinGrants, SpinHost};
    use wasmtime::component::ResourceTable;

    #[test]
    fn a_component_reads_its_own_variables_only() {
        let host = SpinHost::new(
            SpinGrants {
                variables: BTreeMap::from([("admin_token".into(), "s3cret".into())]),
                ..Default::default()
            },
            Default::default(),
        );
        let mut table = ResourceTable::new();
        let mut view = SpinView {
            host: &host,
            table: &mut table,
        };
        assert_eq!(view.get("admin_token".into()).unwrap(), "s3cret");
        assert!(matches!(view.get("other".into()), Err(Error::Undefined(_))));
        assert!(matches!(
            view.get("Admin".into()),
            Err(Error::InvalidName(_))
        ));
    }
}
