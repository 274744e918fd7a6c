"""PII detection: known positives of every kind, tricky negatives, and whole-file scrubbing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunery.data import check_file, find_pii, scrub_file, scrub_text
from tunery.data.scrub import iban_ok, luhn_ok

POSITIVES = [
    ("EMAIL", "write to john.doe+trips@example.co.uk today", "john.doe+trips@example.co.uk"),
    ("EMAIL", "Mail: ANA_B@mail-server.travel.", "ANA_B@mail-server.travel"),
    ("PHONE", "call +44 20 7946 0958 now", "+44 20 7946 0958"),
    ("PHONE", "call +1 (415) 555-0132.", "+1 (415) 555-0132"),
    ("PHONE", "or +49 (0)30 1234567", "+49 (0)30 1234567"),
    ("PHONE", "dial 0044 20 7946 0958", "0044 20 7946 0958"),
    ("PHONE", "US office (212) 555-0123", "(212) 555-0123"),
    ("PHONE", "US office 212-555-0199,", "212-555-0199"),
    ("PHONE", "US office 212.555.0142", "212.555.0142"),
    ("PHONE", "toll free 1-800-555-0199", "1-800-555-0199"),
    ("PHONE", "London 020 7946 0958", "020 7946 0958"),
    ("PHONE", "mobile 07700 900123", "07700 900123"),
    ("PHONE", "Manchester (0161) 496 0000", "(0161) 496 0000"),
    ("PHONE", "Paris 01 23 45 67 89", "01 23 45 67 89"),
    ("PHONE", "Berlin 030/1234567", "030/1234567"),
    ("CARD", "card 4111 1111 1111 1111 exp 12/27", "4111 1111 1111 1111"),
    ("CARD", "card 5555-5555-5555-4444", "5555-5555-5555-4444"),
    ("CARD", "card 5555555555554444", "5555555555554444"),
    ("CARD", "amex 3782 822463 10005", "3782 822463 10005"),
    ("IBAN", "IBAN DE89 3704 0044 0532 0130 00 please", "DE89 3704 0044 0532 0130 00"),
    ("IBAN", "to GB82WEST12345698765432.", "GB82WEST12345698765432"),
    ("IBAN", "FR14 2004 1010 0505 0001 3M02 606", "FR14 2004 1010 0505 0001 3M02 606"),
    ("IP", "server 192.168.1.20.", "192.168.1.20"),
    ("IP", "from 8.8.8.8 and", "8.8.8.8"),
    ("IP", "v6 2001:db8::8a2e:370:7334 ok", "2001:db8::8a2e:370:7334"),
    ("IP", "link fe80::1", "fe80::1"),
    ("SSN", "SSN 123-45-6789", "123-45-6789"),
    ("SSN", "SSN 123 45 6789", "123 45 6789"),
    ("NI_NUMBER", "NI AB 12 34 56 C", "AB 12 34 56 C"),
    ("NI_NUMBER", "NI number: JG103759A.", "JG103759A"),
]


@pytest.mark.parametrize(("kind", "text", "found"), POSITIVES, ids=[f"{k}-{i}" for i, (k, *_) in enumerate(POSITIVES)])
def test_positives(kind, text, found):
    matches = find_pii(text)
    assert [(m.kind, m.text) for m in matches] == [(kind, found)]
    m = matches[0]
    assert text[m.start:m.end] == found


NEGATIVES = [
    "on 2024-01-15 at 10:30", "01.02.2023", "05.03.2024 10:30", "31/12/2023", "2023/12/31",
    "costs $1,234.56 or €1.299,00", "price 0,99 €", "in 1999 2000 2001", "2019 2020 2021 2022",
    "ISBN 978-3-16-148410-0", "ISBN 0-306-40615-2", "ISBN: 0306406152", "9783161484100",
    "version 1.2.3.4", "v1.2.3", "Python 3.11.4", "release 10.0.0.1", "pi is 3.14159265358979",
    "ssn 000-12-3456", "666-12-3456", "900-12-3456", "123-00-4567", "123-45-0000",
    "QQ123456C", "GB123456A", "std::vector<int>", "Foo::Bar", "abc::def", "12:30:45",
    "order 12345678", "0.123456789", "4111 1111 1111 1112", "1234 5678 9012 3456",
    "call 555-1234", "Room 101, floor 2", "temperature -40 to +45", "lat 48.8566, lon 2.3522",
    "user@localhost", "a@b", "see http://example.com/a@b",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_negatives(text):
    assert find_pii(text) == []


def test_iban_with_a_bad_checksum_is_not_an_iban():
    kinds = {m.kind for m in find_pii("DE89 3704 0044 0532 0130 01")}
    # its tail still reads like an international "00 44 ..." phone number, which is redacted as one
    assert "IBAN" not in kinds and "CARD" not in kinds


def test_checksums():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82WEST12345698765432") and not iban_ok("GB82WEST12345698765433")
    assert not iban_ok("GB82WEST1234569876543")  # one short of the UK length
    assert not iban_ok("XX82WEST12345698765432")  # no such country


def test_scrub_text_replaces_with_typed_placeholders():
    text = "Mail ana@example.com, call +44 20 7946 0958, pay to GB82 WEST 1234 5698 7654 32 from 10.0.0.7."
    new, matches = scrub_text(text)
    assert new == "Mail [EMAIL], call [PHONE], pay to [IBAN] from [IP]."
    assert [m.kind for m in matches] == ["EMAIL", "PHONE", "IBAN", "IP"]
    assert scrub_text("nothing to see in 2024") == ("nothing to see in 2024", [])


def test_overlaps_resolve_to_one_match():
    # the IPv6 tail is also an IPv4 address; the card digits are not also a phone
    assert [m.kind for m in find_pii("::ffff:192.168.0.1 and 4111 1111 1111 1111")] == ["IP", "CARD"]


def _write(path: Path, lines: list) -> Path:
    path.write_bytes(b"\n".join(x if isinstance(x, bytes) else json.dumps(x).encode() for x in lines) + b"\n")
    return path


def test_scrub_file_keeps_structure_and_untouched_lines(tmp_path: Path):
    clean = b'{"messages": [{"role": "user",   "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}'
    dirty = {"messages": [{"role": "system", "content": "Agent ana@example.com"},
                          {"role": "user", "content": [{"type": "text", "text": "my card 4111 1111 1111 1111"}]},
                          {"role": "assistant", "content": "Noted, call 020 7946 0958", "weight": 1}]}
    src = _write(tmp_path / "in.jsonl", [clean, dirty, b'{"note": "reach me at bob@example.org"}'])
    report = scrub_file(src, tmp_path / "out.jsonl")
    out = (tmp_path / "out.jsonl").read_bytes().split(b"\n")
    assert out[0] == clean  # byte for byte, odd spacing and all
    scrubbed = json.loads(out[1])
    assert scrubbed["messages"][0] == {"role": "system", "content": "Agent [EMAIL]"}
    assert scrubbed["messages"][1]["content"] == [{"type": "text", "text": "my card [CARD]"}]
    assert scrubbed["messages"][2] == {"role": "assistant", "content": "Noted, call [PHONE]", "weight": 1}
    assert json.loads(out[2]) == {"note": "reach me at [EMAIL]"}
    assert out[3] == b""
    assert [(f.line, f.field, f.match.kind) for f in report.findings] == [
        (2, "messages[0].content", "EMAIL"), (2, "messages[1].content[0].text", "CARD"),
        (2, "messages[2].content", "PHONE"), (3, "text", "EMAIL")]
    assert report.counts == {"EMAIL": 2, "CARD": 1, "PHONE": 1} and report.lines_with_pii == [2, 3]
    assert report.plain_text_lines == [3] and report.n_lines == 3
    assert not list(tmp_path.glob(".*tmp"))  # written atomically, no leftovers
    json.dumps(report.to_dict())


def test_scrub_file_preserves_undecodable_bytes(tmp_path: Path):
    # (not b"\xff\xfe" first: that is UTF-16's byte-order mark, a file scrub refuses)
    src = _write(tmp_path / "in.jsonl", [b"\xff\xfa junk bob@example.org \x80"])
    scrub_file(src, tmp_path / "out.jsonl")
    assert (tmp_path / "out.jsonl").read_bytes() == b"\xff\xfa junk [EMAIL] \x80\n"


def test_check_file_writes_nothing(tmp_path: Path):
    src = _write(tmp_path / "in.jsonl", [{"messages": [{"role": "user", "content": "SSN 123-45-6789"}]}])
    before = sorted(tmp_path.iterdir())
    report = check_file(src)
    assert report.found and report.counts == {"SSN": 1} and report.output is None
    assert sorted(tmp_path.iterdir()) == before
    assert not check_file(_write(tmp_path / "clean.jsonl", [{"messages": []}])).found


def test_a_scrubbed_line_keeps_its_crlf_ending(tmp_path: Path):
    """A rewritten line once ended in a bare LF among CRLF lines, which made a file of mixed endings."""
    clean = b'{"messages": [{"role": "user", "content": "Hi"}]}'
    src = tmp_path / "in.jsonl"
    src.write_bytes(clean + b"\r\n" + b'{"messages": [{"role": "user", "content": "ana@example.com"}]}\r\n' + clean)
    scrub_file(src, tmp_path / "out.jsonl")
    assert (tmp_path / "out.jsonl").read_bytes() == (
        clean + b"\r\n" + b'{"messages": [{"role": "user", "content": "[EMAIL]"}]}\r\n' + clean)
