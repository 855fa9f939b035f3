//! Name and key syntax checks (RFC 1123 labels/subdomains, RFC 1035 labels, qualified names,
//! label values, config keys, env var names, IANA port names) returning kube's exact messages.

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const QUALIFIED_NAME_MAX: usize = 63;
const LABEL_VALUE_MAX: usize = 63;
const CONFIG_KEY_MAX: usize = 253;
const PORT_NAME_MAX: usize = 15;

const DNS1123_LABEL_MESSAGE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_MESSAGE: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_PART_MESSAGE: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const QUALIFIED_NAME_MESSAGE: &str = "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')";
const LABEL_VALUE_MESSAGE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const CONFIG_KEY_MESSAGE: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
const ENV_VAR_NAME_MESSAGE: &str = "a valid environment variable name must consist only of printable ASCII characters other than '='";

fn too_long(max: usize) -> String {
    format!("must be no more than {max} characters")
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_dns1123_label(s: &str) -> bool {
    let starts_and_ends = s.starts_with(is_lower_alnum) && s.ends_with(is_lower_alnum);
    starts_and_ends && s.chars().all(|c| is_lower_alnum(c) || c == '-')
}

/// RFC 1123 label: namespaces, container names, port names of Services.
pub fn validate_dns1123_label(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errors.push(too_long(DNS1123_LABEL_MAX));
    }
    if !is_dns1123_label(s) {
        errors.push(DNS1123_LABEL_MESSAGE.to_string());
    }
    errors
}

/// RFC 1123 subdomain: most object names.
pub fn validate_dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errors.push(too_long(DNS1123_SUBDOMAIN_MAX));
    }
    if !s.split('.').all(is_dns1123_label) {
        errors.push(DNS1123_SUBDOMAIN_MESSAGE.to_string());
    }
    errors
}

/// RFC 1035 label: Service names (they become DNS names starting with a letter).
pub fn validate_dns1035_label(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errors.push(too_long(DNS1123_LABEL_MAX));
    }
    if !(is_dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())) {
        errors.push(DNS1035_LABEL_MESSAGE.to_string());
    }
    errors
}

fn is_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

fn is_qualified_name_part(s: &str) -> bool {
    s.starts_with(is_alnum)
        && s.ends_with(is_alnum)
        && s.chars()
            .all(|c| is_alnum(c) || matches!(c, '-' | '_' | '.'))
}

/// Label and annotation keys: `[prefix/]name`, prefix a DNS subdomain, name ≤ 63.
pub fn validate_qualified_name(s: &str) -> Vec<String> {
    let parts: Vec<&str> = s.split('/').collect();
    let (prefix, name) = match parts.as_slice() {
        [name] => (None, *name),
        [prefix, name] => (Some(*prefix), *name),
        _ => return vec![QUALIFIED_NAME_MESSAGE.to_string()],
    };
    let mut errors = Vec::new();
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            errors.push("prefix part must be non-empty".to_string());
        } else {
            errors.extend(
                validate_dns1123_subdomain(prefix)
                    .into_iter()
                    .map(|m| format!("prefix part {m}")),
            );
        }
    }
    if name.is_empty() {
        errors.push("name part must be non-empty".to_string());
    } else if name.len() > QUALIFIED_NAME_MAX {
        errors.push(format!("name part {}", too_long(QUALIFIED_NAME_MAX)));
    }
    if !name.is_empty() && !is_qualified_name_part(name) {
        errors.push(QUALIFIED_NAME_PART_MESSAGE.to_string());
    }
    errors
}

/// Label values: empty, or a qualified name part of ≤ 63 characters.
pub fn validate_label_value(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > LABEL_VALUE_MAX {
        errors.push(too_long(LABEL_VALUE_MAX));
    }
    if !s.is_empty() && !is_qualified_name_part(s) {
        errors.push(LABEL_VALUE_MESSAGE.to_string());
    }
    errors
}

/// ConfigMap and Secret keys.
pub fn validate_config_key(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > CONFIG_KEY_MAX {
        errors.push(too_long(CONFIG_KEY_MAX));
    }
    let charset_ok = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if s.is_empty() || !charset_ok {
        errors.push(CONFIG_KEY_MESSAGE.to_string());
    }
    if s == "." {
        errors.push("must not be '.'".to_string());
    } else if s == ".." {
        errors.push("must not be '..'".to_string());
    } else if s.starts_with("..") {
        errors.push("must not start with '..'".to_string());
    }
    errors
}

/// Container env var names (kube 1.32's relaxed rule).
pub fn validate_env_var_name(s: &str) -> Vec<String> {
    let printable = s.chars().all(|c| (' '..='~').contains(&c) && c != '=');
    if printable {
        Vec::new()
    } else {
        vec![ENV_VAR_NAME_MESSAGE.to_string()]
    }
}

/// RBAC object names and others that only become one URL path segment.
pub fn validate_path_segment_name(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s == "." || s == ".." {
        errors.push(format!("may not be '{s}'"));
    }
    for forbidden in ["/", "%"] {
        if s.contains(forbidden) {
            errors.push(format!("may not contain '{forbidden}'"));
        }
    }
    errors
}

/// Container and Service port names: IANA service names.
pub fn validate_port_name(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > PORT_NAME_MAX {
        errors.push(too_long(PORT_NAME_MAX));
    }
    if !s.chars().all(|c| is_lower_alnum(c) || c == '-') {
        errors.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if s.contains("--") {
        errors.push("must not contain consecutive hyphens".to_string());
    }
    if !s.chars().any(|c| c.is_ascii_lowercase()) {
        errors.push("must contain at least one letter (a-z)".to_string());
    }
    if s.starts_with('-') || s.ends_with('-') {
        errors.push("must not begin or end with a hyphen".to_string());
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        type Check = fn(&str) -> Vec<String>;
        let cases: &[(Check, &str, bool)] = &[
            (validate_dns1123_label, "my-name", true),
            (validate_dns1123_label, "123-abc", true),
            (validate_dns1123_label, "My-name", false),
            (validate_dns1123_label, "-a", false),
            (validate_dns1123_label, "a.b", false),
            (validate_dns1123_subdomain, "example.com", true),
            (validate_dns1123_subdomain, "Web_1", false),
            (validate_dns1123_subdomain, "a..b", false),
            (validate_dns1035_label, "abc-123", true),
            (validate_dns1035_label, "1abc", false),
            (validate_qualified_name, "app", true),
            (validate_qualified_name, "example.com/My_Name", true),
            (validate_qualified_name, "a/b/c", false),
            (validate_qualified_name, "/b", false),
            (validate_qualified_name, "bad key", false),
            (validate_label_value, "", true),
            (validate_label_value, "v1.2_3", true),
            (validate_label_value, "a/b", false),
            (validate_config_key, "key.name", true),
            (validate_config_key, "..x", false),
            (validate_config_key, "bad key", false),
            (validate_env_var_name, "MY_VAR", true),
            (validate_env_var_name, "1-ok.too", true),
            (validate_env_var_name, "A=B", false),
            (validate_path_segment_name, "system:admin", true),
            (validate_path_segment_name, "a/b", false),
            (validate_port_name, "http", true),
            (validate_port_name, "80", false),
            (validate_port_name, "a--b", false),
        ];
        for (check, input, ok) in cases {
            assert_eq!(check(input).is_empty(), *ok, "{input}");
        }
    }

    #[test]
    fn messages() {
        assert_eq!(
            validate_dns1123_label(&"a".repeat(64)),
            vec!["must be no more than 63 characters".to_string()]
        );
        assert_eq!(
            validate_qualified_name("a/b/c"),
            vec![QUALIFIED_NAME_MESSAGE.to_string()]
        );
        assert_eq!(
            validate_qualified_name("Bad_/x"),
            vec![format!("prefix part {DNS1123_SUBDOMAIN_MESSAGE}")]
        );
    }
}
