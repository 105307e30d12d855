use crate::indicator::Indicator;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WarninglistError(pub String);

#[derive(Debug, Clone)]
pub struct Warninglist {
    pub name: String,
}

impl Warninglist {
    pub fn from_json(bytes: &[u8]) -> Result<Warninglist, WarninglistError> {
        let _ = bytes;
        Err(WarninglistError("not written yet".into()))
    }
}

#[derive(Debug, Clone, Default)]
pub struct WarninglistSet {
    lists: Vec<Warninglist>,
}

impl WarninglistSet {
    pub fn new(lists: Vec<Warninglist>) -> Self {
        WarninglistSet { lists }
    }
    pub fn len(&self) -> usize {
        self.lists.len()
    }
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }
    pub fn matching(&self, indicator: &Indicator) -> Option<&str> {
        let _ = indicator;
        None
    }
}
