import json
import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from privehr.deploy.provision import (
    INSECURE_WARNING,
    ProvisionError,
    Roster,
    check_private_modes,
    load_identity_key,
    provision,
)


@pytest.fixture(scope="module")
def prov(tmp_path_factory):
    out = tmp_path_factory.mktemp("prov")
    return provision(["b-hosp", "a-hosp", "c-hosp"], out, superlink="10.1.2.3:9092", hosts=["link.example"])


def test_layout_and_private_modes(prov):
    assert sorted(prov.sites) == ["a-hosp", "b-hosp", "c-hosp"]
    for name, d in prov.sites.items():
        for f in ("identity.key", "supernode.key", "supernode.pub", "audit.key", "ca.crt", "roster.json", "site.json"):
            assert (d / f).exists(), f
        assert json.loads((d / "site.json").read_text())["site"] == name
        # no other site's private material in this folder
        assert len(list(d.glob("*.key"))) == 3
    assert check_private_modes(prov.out) == []
    for key in prov.out.rglob("*.key"):
        assert key.stat().st_mode & 0o777 == 0o600
    assert (prov.coordinator / "ca.crt").stat().st_mode & 0o077 == 0o044


def test_server_cert_chain_and_san(prov):
    ca = x509.load_pem_x509_certificate((prov.coordinator / "ca.crt").read_bytes())
    srv = x509.load_pem_x509_certificate((prov.coordinator / "server.pem").read_bytes())
    srv.verify_directly_issued_by(ca)
    san = srv.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    assert {"127.0.0.1", "::1", "10.1.2.3"} <= ips
    assert {"localhost", "link.example"} <= set(san.get_values_for_type(x509.DNSName))
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_supernode_key_is_nist_ecdsa_openssh(prov):
    d = prov.sites["a-hosp"]
    priv = serialization.load_ssh_private_key((d / "supernode.key").read_bytes(), password=None)
    pub = serialization.load_ssh_public_key((d / "supernode.pub").read_bytes())
    assert isinstance(priv, ec.EllipticCurvePrivateKey) and isinstance(priv.curve, ec.SECP384R1)
    assert pub.public_numbers() == priv.public_key().public_numbers()


def test_roster_matches_identity_keys(prov):
    roster = Roster.load(prov.sites["b-hosp"] / "roster.json")
    assert roster.names == ["a-hosp", "b-hosp", "c-hosp"]
    assert [roster.index(s) for s in roster.names] == [0, 1, 2]
    for name, d in prov.sites.items():
        key = load_identity_key(d)
        assert isinstance(key, Ed25519PrivateKey)
        assert roster.identity_keys()[name] == key.public_key().public_bytes_raw()
    assert roster.superlink == "10.1.2.3:9092" and not roster.insecure


def test_insecure_warns_and_writes_no_tls(tmp_path):
    with pytest.warns(UserWarning, match="INSECURE"):
        res = provision(["a", "b", "c"], tmp_path, insecure=True)
    assert res.insecure and "INSECURE" in INSECURE_WARNING
    assert not (tmp_path / "coordinator" / "server.key").exists()
    assert not (tmp_path / "sites" / "a" / "supernode.key").exists()


def test_secure_is_silent(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        provision(["a", "b", "c"], tmp_path)


@pytest.mark.parametrize("sites", [[], ["A"], ["a_b"], ["a", "a"], ["-x"]])
def test_bad_site_names(tmp_path, sites):
    with pytest.raises(ProvisionError, match="sites"):
        provision(sites, tmp_path)


def test_group_readable_key_is_reported(prov, tmp_path):
    k = tmp_path / "x.key"
    k.write_bytes(b"k")
    k.chmod(0o640)
    assert check_private_modes(tmp_path) == [k]


def test_rotate_site_updates_roster_everywhere(tmp_path):
    from privehr.deploy.provision import rotate_site

    res = provision(["a", "b", "c"], tmp_path)
    before = Roster.load(tmp_path / "coordinator" / "roster.json")
    old_ident = (res.sites["b"] / "identity.key").read_bytes()
    new = rotate_site(tmp_path, "b", ("identity", "supernode"))
    for d in [res.coordinator, *res.sites.values()]:
        r = Roster.load(d / "roster.json")
        assert r.sites["b"]["identity"] == new["identity"] != before.sites["b"]["identity"]
        assert r.sites["b"]["supernode"] == new["supernode"] != before.sites["b"]["supernode"]
        assert r.sites["b"]["audit"] == before.sites["b"]["audit"]  # not rotated
        assert r.sites["a"] == before.sites["a"]
    assert (res.sites["b"] / "identity.key").read_bytes() != old_ident
    assert load_identity_key(res.sites["b"]).public_key().public_bytes_raw().hex() == new["identity"]
    assert check_private_modes(tmp_path) == []


def test_rotate_unknown_site_or_kind(tmp_path):
    from privehr.deploy.provision import rotate_site

    provision(["a", "b", "c"], tmp_path)
    with pytest.raises(ProvisionError, match="site"):
        rotate_site(tmp_path, "zz")
    with pytest.raises(ProvisionError, match="kinds"):
        rotate_site(tmp_path, "a", ("ca",))


def test_site_made_keys_never_exist_at_the_coordinator(tmp_path):
    """Sites generate their own keys; the coordinator builds the roster from public files and
    the site folder it writes holds public files only. The merged folder runs the site."""
    import shutil

    from typer.testing import CliRunner

    from privehr.deploy.cli import deploy_app
    from privehr.deploy.provision import Roster, load_identity_key

    run = CliRunner().invoke
    for s in ("hosp-a", "hosp-b"):
        assert run(deploy_app, ["site", "keygen", "--site", s, "--out", str(tmp_path / s)]).exit_code == 0
    public = [str(tmp_path / s / f"{s}.public.json") for s in ("hosp-a", "hosp-b")]
    res = run(deploy_app, ["provision", "--sites", "hosp-a,hosp-b,hosp-c", "--out", str(tmp_path / "prov"),
                           "--site-keys", public[0], "--site-keys", public[1]])
    assert res.exit_code == 0, res.output
    prov = tmp_path / "prov"
    for s in ("hosp-a", "hosp-b"):
        assert sorted(p.name for p in (prov / "sites" / s).iterdir()) == ["ca.crt", "roster.json", "site.json"]
    assert (prov / "sites" / "hosp-c" / "identity.key").exists()  # a site without its own keys: as before
    roster = Roster.load(prov / "coordinator" / "roster.json")
    for s in ("hosp-a", "hosp-b"):
        for f in ("ca.crt", "roster.json", "site.json"):
            shutil.copy(prov / "sites" / s / f, tmp_path / s / f)
        own = json.loads((tmp_path / s / f"{s}.public.json").read_text())
        assert roster.sites[s]["supernode"] == own["supernode"] and roster.sites[s]["audit"] == own["audit"]
        assert roster.identity_keys()[s] == load_identity_key(tmp_path / s).public_key().public_bytes_raw()
        assert not check_private_modes(tmp_path / s)
    from privehr.deploy.site_runtime import SiteRuntime

    assert SiteRuntime(tmp_path / "hosp-a", tmp_path / "store.duckdb").name == "hosp-a"  # a usable --credentials
    # and a keygen folder is never overwritten
    again = run(deploy_app, ["site", "keygen", "--site", "hosp-a", "--out", str(tmp_path / "hosp-a")])
    assert again.exit_code == 2 and "already holds keys" in " ".join(again.output.split())


def test_bad_site_public_file_names_the_field(tmp_path):
    from privehr.deploy.provision import ProvisionError
    from privehr.deploy.site_keys import load_public_keys, site_keygen

    path = site_keygen("hosp-a", tmp_path / "a")
    doc = json.loads(path.read_text())
    for field, value in (("identity", "00" * 31), ("supernode", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + "A" * 43)):
        path.write_text(json.dumps({**doc, field: value}))
        with pytest.raises(ProvisionError, match=f"'{field}'"):
            load_public_keys(path, insecure=False)
