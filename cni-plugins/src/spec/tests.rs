//! Data-driven tests of config list parsing/validation and result parsing across versions.

use expect_test::{Expect, expect};

use super::*;

fn check_list(input: &str, expect: Expect) {
    let got = match NetworkConfigList::from_list_bytes(input.as_bytes()) {
        Ok(l) => format!(
            "ok {} {} check={} gc={} types={:?}",
            l.name,
            l.cni_version,
            !l.disable_check,
            !l.disable_gc,
            l.plugins.iter().map(plugin_type).collect::<Vec<_>>()
        ),
        Err(e) => format!("err {e}"),
    };
    expect.assert_eq(&got);
}

fn check_conf(input: &str, expect: Expect) {
    let got = match NetworkConfigList::from_conf_bytes(input.as_bytes()) {
        Ok(l) => format!(
            "ok {} {} {}",
            l.name,
            l.cni_version,
            serde_json::to_string(&l.plugins).expect("json")
        ),
        Err(e) => format!("err {e}"),
    };
    expect.assert_eq(&got);
}

#[test]
fn conflist_parsing_and_validation() {
    check_list(
        r#"{"cniVersion":"1.0.0","name":"k8s-pod-network","plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#,
        expect![[r#"ok k8s-pod-network 1.0.0 check=true gc=true types=["bridge", "portmap"]"#]],
    );
    check_list(
        r#"{"cniVersion":"1.1.0","name":"n","disableCheck":true,"disableGC":"true","plugins":[{"type":"bridge"}]}"#,
        expect![[r#"ok n 1.1.0 check=false gc=false types=["bridge"]"#]],
    );
    check_list(
        "{not json",
        expect![[r#"err invalid JSON: key must be a string at line 1 column 2"#]],
    );
    check_list("[1]", expect![[r#"err not a JSON object"#]]);
    check_list(
        r#"{"name":"n","plugins":[{"type":"bridge"}]}"#,
        expect![[r#"err no cniVersion"#]],
    );
    check_list(
        r#"{"cniVersion":"0.2.0","name":"n","plugins":[{"type":"bridge"}]}"#,
        expect![[
            r#"err unsupported cniVersion "0.2.0" (supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0)"#
        ]],
    );
    check_list(
        r#"{"cniVersion":"9.9.9","name":"n","plugins":[{"type":"bridge"}]}"#,
        expect![[
            r#"err unsupported cniVersion "9.9.9" (supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0)"#
        ]],
    );
    check_list(
        r#"{"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}"#,
        expect![[r#"err no name"#]],
    );
    check_list(
        r#"{"cniVersion":"1.0.0","name":"../etc","plugins":[{"type":"bridge"}]}"#,
        expect![[
            r#"err invalid name "../etc": must start with a letter or digit, then letters, digits, '_', '.' or '-'"#
        ]],
    );
    check_list(
        r#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#,
        expect![[r#"err no plugins"#]],
    );
    check_list(
        r#"{"cniVersion":"1.0.0","name":"n"}"#,
        expect![[r#"err no plugins"#]],
    );
    check_list(
        r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{"ipam":{}}]}"#,
        expect![[r#"err plugin 1 has no type"#]],
    );
    check_list(
        r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../../bin/sh"}]}"#,
        expect![[r#"err plugin 0 has an invalid type "../../bin/sh""#]],
    );
    check_list(
        r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":7}]}"#,
        expect![[r#"err plugin 0 has an invalid type "7""#]],
    );
    check_list(
        r#"{"cniVersion":"1.0.0","name":"n","plugins":{"type":"bridge"}}"#,
        expect![[r#"err field plugins must be a list"#]],
    );
    check_list(
        r#"{"cniVersion":1,"name":"n","plugins":[{"type":"bridge"}]}"#,
        expect![[r#"err field cniVersion must be a string"#]],
    );
}

#[test]
fn single_conf_becomes_a_one_plugin_list_keeping_unknown_fields() {
    check_conf(
        r#"{"cniVersion":"0.4.0","name":"net","type":"bridge","bridge":"cni0","x-custom":{"a":[1,2]}}"#,
        expect![[r#"ok net 0.4.0 [{"bridge":"cni0","type":"bridge","x-custom":{"a":[1,2]}}]"#]],
    );
    check_conf(
        r#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"bridge"}]}"#,
        expect![[r#"ok net 1.0.0 [{"type":"bridge"}]"#]],
    );
    check_conf(
        r#"{"cniVersion":"1.0.0","name":"net"}"#,
        expect![[r#"err plugin 0 has no type"#]],
    );
}

#[test]
fn versions_compare_numerically() {
    assert!(Version::parse("0.10.0") > Version::parse("0.4.0"));
    assert_eq!(Version::parse("1.1.0"), Some(Version::V1_1_0));
    assert_eq!(Version::parse("1.1"), None);
    assert_eq!(Version::parse("1.1.0.0"), None);
    assert_eq!(Version::parse("a.b.c"), None);
}

fn check_result(input: &str, expect: Expect) {
    let v: Value = serde_json::from_str(input).expect("json");
    let got = match CniResult::from_value(&v) {
        Ok(r) => {
            let eth0: Vec<String> = r
                .ips_of("eth0")
                .iter()
                .map(|i| i.address.to_string())
                .collect();
            format!(
                "ok {} eth0={eth0:?}",
                serde_json::to_string(&r).expect("json")
            )
        }
        Err(e) => format!("err {e}"),
    };
    expect.assert_eq(&got);
}

#[test]
fn results_across_versions() {
    check_result(
        r#"{"cniVersion":"1.1.0",
            "interfaces":[{"name":"cni0","mac":"aa:bb:cc:dd:ee:ff"},{"name":"eth0","mac":"00:11:22:33:44:55","sandbox":"/run/netns/x","mtu":1500}],
            "ips":[{"address":"10.1.0.5/24","gateway":"10.1.0.1","interface":1},{"address":"fd00::5/64","interface":1}],
            "routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1","priority":10}],
            "dns":{"nameservers":["10.96.0.10"],"search":["svc.cluster.local"]}}"#,
        expect![[
            r#"ok {"cniVersion":"1.1.0","interfaces":[{"name":"cni0","mac":"aa:bb:cc:dd:ee:ff"},{"name":"eth0","mac":"00:11:22:33:44:55","mtu":1500,"sandbox":"/run/netns/x"}],"ips":[{"address":"10.1.0.5/24","gateway":"10.1.0.1","interface":1},{"address":"fd00::5/64","interface":1}],"routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1","priority":10}],"dns":{"nameservers":["10.96.0.10"],"search":["svc.cluster.local"]}} eth0=["10.1.0.5/24", "fd00::5/64"]"#
        ]],
    );
    // 0.3.x/0.4.0: same shape plus ips[].version, which is ignored.
    check_result(
        r#"{"cniVersion":"0.3.1","interfaces":[{"name":"eth0","sandbox":"/x"}],
            "ips":[{"version":"4","address":"10.2.0.7/16","gateway":"10.2.0.1","interface":0}],"dns":{}}"#,
        expect![[
            r#"ok {"cniVersion":"0.3.1","interfaces":[{"name":"eth0","sandbox":"/x"}],"ips":[{"address":"10.2.0.7/16","gateway":"10.2.0.1","interface":0}]} eth0=["10.2.0.7/16"]"#
        ]],
    );
    check_result(
        r#"{"cniVersion":"0.4.0","ips":[{"version":"6","address":"fd00::1/64"}]}"#,
        expect![[
            r#"ok {"cniVersion":"0.4.0","ips":[{"address":"fd00::1/64"}]} eth0=["fd00::1/64"]"#
        ]],
    );
    check_result(
        r#"{"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.2/24"}}"#,
        expect![[
            r#"err result version 0.2.0 uses the pre-0.3.0 ip4/ip6 format, which is not supported (configure cniVersion 0.3.0 or later)"#
        ]],
    );
    check_result(
        r#"{"ips":[]}"#,
        expect![[r#"err result has no cniVersion"#]],
    );
    check_result(
        r#"{"cniVersion":"2.0.0"}"#,
        expect![[r#"err result version "2.0.0" is not supported"#]],
    );
    check_result(
        r#"{"cniVersion":"1.0.0","ips":[{"address":"not-an-ip"}]}"#,
        expect!["err invalid result: invalid IP address syntax"],
    );
}

#[test]
fn error_objects() {
    let e = ErrorObject::from_bytes(
        br#"{"cniVersion":"1.0.0","code":7,"msg":"invalid config","details":"no bridge"}"#,
    )
    .expect("error object");
    assert_eq!(
        (e.code, e.msg.as_str(), e.details.as_str()),
        (7, "invalid config", "no bridge")
    );
    assert_eq!(
        ErrorObject::from_bytes(br#"{"cniVersion":"1.0.0","ips":[]}"#),
        None
    );
    assert_eq!(ErrorObject::from_bytes(b"plain text"), None);
}

#[test]
fn port_mappings_serialize_like_the_portmap_plugin_expects() {
    let pm = PortMapping {
        host_port: 8080,
        container_port: 80,
        protocol: "tcp".into(),
        host_ip: String::new(),
    };
    expect![[r#"{"hostPort":8080,"containerPort":80,"protocol":"tcp"}"#]]
        .assert_eq(&serde_json::to_string(&pm).expect("json"));
    let pm = PortMapping {
        host_ip: "127.0.0.1".into(),
        ..pm
    };
    expect![[r#"{"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":"127.0.0.1"}"#]]
        .assert_eq(&serde_json::to_string(&pm).expect("json"));
}
