//! TEMPORARY stand-in for wt-auth's UserInfo.
#[derive(Clone, Debug, Default)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}
