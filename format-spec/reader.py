#!/usr/bin/env python3
"""An independent reader of the quiver v1 format (1.0 to 1.2), written from this folder's
documents alone (standard library only). It verifies every checksum, decodes every vector of an
index and can answer queries by exhaustive search over the decoded vectors, which equals
quiver's answer with nprobe = nlist (ADC on by-residual codes is the exact distance to those
reconstructions); for an `,RFlat` index (1.2) over the full vectors of its vectors files, which
equals quiver's answer with nprobe = nlist and every vector a re-rank candidate.

    python3 format-spec/reader.py INDEX_DIR                          # verify and describe
    python3 format-spec/reader.py INDEX_DIR --queries q.fvecs --k 3  # top-k ids per query

Meant for small indexes (it is pure Python); not used by quiver or its tests.
"""
import argparse
import json
import os
import struct
import sys

# CRC-32C (Castagnoli), reflected polynomial 0x82F63B78 (README.md, Conventions).
_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283

KINDS = {1: "manifest", 2: "quantizer", 3: "codebooks", 4: "list directory", 5: "segment", 8: "vectors"}


class FormatError(Exception):
    pass


def header(name, data, kind):
    """02-file-header.md: checks in the documented order."""
    if len(data) < 64:
        raise FormatError(f"{name}: truncated header")
    magic, k, major, minor, index_id, poff, plen, pcrc, _res, hcrc = struct.unpack("<8sIHH16sQQI8sI", data[:64])
    if magic != b"QUIVERix":
        raise FormatError(f"{name}: not a quiver file")
    if crc32c(data[:60]) != hcrc:
        raise FormatError(f"{name}: header checksum mismatch")
    if major != 1 or minor > 5:
        raise FormatError(f"{name}: format {major}.{minor} not readable by this reader")
    if k != kind:
        raise FormatError(f"{name}: expected a {KINDS[kind]} file, found kind {k}")
    return index_id, poff, plen, pcrc


def small_file(dir_, name, kind):
    data = open(os.path.join(dir_, name), "rb").read()
    index_id, poff, plen, pcrc = header(name, data, kind)
    if poff != 64 or 64 + plen != len(data):
        raise FormatError(f"{name}: truncated payload")
    payload = data[64:]
    if crc32c(payload) != pcrc:
        raise FormatError(f"{name}: payload checksum mismatch")
    return index_id, pcrc, len(data), payload


def f32s(b):
    return list(struct.unpack(f"<{len(b) // 4}f", b))


def read_index(dir_):
    manifests = sorted(n for n in os.listdir(dir_) if n.startswith("MANIFEST-"))
    if not manifests:
        raise FormatError(f"{dir_}: no MANIFEST-* file")
    mname = max(manifests, key=lambda n: int(n.split("-", 1)[1]))
    index_id, _, _, p = small_file(dir_, mname, 1)
    # 03-manifest.md: ManifestBody (160) = generation, Params (128), n_files, reserved.
    generation = struct.unpack_from("<Q", p, 0)[0]
    (dim, metric, layout, raw, refine, nlist, pq_m, nbits, hnsw_m, efc, efs, niter, _r1, ntotal, seed, train,
     factory) = struct.unpack_from("<IBBBBIIIIIIIIQQQ64s", p, 8)
    n_files = struct.unpack_from("<I", p, 136)[0]
    files = {}
    for i in range(n_files):
        name, kind, _r, size, crc, _r2 = struct.unpack_from("<40sIIQII", p, 160 + 64 * i)
        files[name.rstrip(b"\0").decode()] = (kind, size, crc)
    if (layout, nbits) not in ((1, 8), (2, 4), (3, 0)):
        raise FormatError(f"code layout {layout} / nbits {nbits} not defined in format 1.5")
    if refine not in (0, 1, 2):
        raise FormatError(f"refine {refine} not defined in format 1.5")
    # 12-generations.md: this reader reads a generation without deleted entries.
    if any(kind == 10 for kind, _s, _c in files.values()):
        raise FormatError(f"{mname}: names a deletion set, which this reader does not apply")

    def owned(name, kind):
        fid, crc, size, payload = small_file(dir_, name, kind)
        want_kind, want_size, want_crc = files[name]
        if (fid, crc, size, kind) != (index_id, want_crc, want_size, want_kind):
            raise FormatError(f"{name}: does not match the manifest")
        return payload

    def paged(name, kind):
        """A file read per query or mapped (segment, vectors, graph): header page, owner, size."""
        data = open(os.path.join(dir_, name), "rb").read()
        fid, poff, plen, pcrc = header(name, data, kind)
        _kind, size, crc = files[name]
        if (fid, pcrc, len(data), poff) != (index_id, crc, size, 4096) or poff + plen != len(data):
            raise FormatError(f"{name}: does not match the manifest")
        return data, pcrc

    def checked_pages(name, data, pcrc, n_pages, table_crc):
        """10-vectors.md, 11-graph.md: the page table and every data page."""
        table_at = 4096 * (1 + n_pages)
        table = data[table_at:table_at + 4 * n_pages]
        if crc32c(table) != table_crc or crc32c(data[4096:]) != pcrc:
            raise FormatError(f"{name}: checksum mismatch")
        page_crcs = struct.unpack(f"<{n_pages}I", table)
        for pg in range(n_pages):
            if crc32c(data[4096 * (1 + pg):4096 * (2 + pg)]) != page_crcs[pg]:
                raise FormatError(f"{name}: page {pg}: checksum mismatch")

    def vectors_file_dim(name, want_elem, want_dim):
        data, pcrc = paged(name, 8)
        vh = data[64:104]
        vdim, elem, vb, table_crc, n_pages, n_vec, rb, hcrc = struct.unpack("<IB3xIIQQII", vh)
        # 1.5: record_bytes, 0 before (the vector alone); vector_bytes + 8 with the ids.
        rb = rb or vb
        bad = vb != want_dim * (4 if elem == 1 else 1) or rb not in (vb, vb + 8)
        if crc32c(vh[:36]) != hcrc or (vdim, elem) != (want_dim, want_elem) or bad:
            raise FormatError(f"{name}: bad vectors header")
        checked_pages(name, data, pcrc, n_pages, table_crc)
        return data, vb, elem, n_vec, rb

    def vectors_file(name, want_elem):
        return vectors_file_dim(name, want_elem, dim)

    info = {"manifest": mname, "generation": generation, "factory": factory.rstrip(b"\0").decode(), "dim": dim,
            "metric": ["l2", "ip", "cosine"][metric], "nlist": nlist, "pq_m": pq_m, "hnsw_m": hnsw_m,
            "ntotal": ntotal}
    if nlist == 0:
        # 11-graph.md: HNSW{M},Flat (layout 3) or HNSW{M}_PQ{m} (layout 1). The graph is checked page by page and for ids in range;
        # the exhaustive answer needs only the vectors, in id order.
        g, gcrc = paged("graph.qvg", 9)
        gh = g[64:120]
        n_nodes, n_slots, levels_page, n_pages, gm, entry, _maxl, table_crc, _r, hcrc = \
            struct.unpack("<QQQQIIIIII", gh)
        if crc32c(gh[:52]) != hcrc or (n_nodes, gm) != (ntotal, hnsw_m) or nlist != 0:
            raise FormatError("graph.qvg: bad graph header")
        checked_pages("graph.qvg", g, gcrc, n_pages, table_crc)
        levels = g[4096 * (1 + levels_page):4096 * (1 + levels_page) + n_nodes]
        if sum(2 * gm + lv * gm for lv in levels) != n_slots:
            raise FormatError("graph.qvg: levels and slot count disagree")
        slots = struct.unpack_from(f"<{n_slots}I", g, 4096)
        if any(v >= n_nodes and v != 0xFFFFFFFF for v in slots) or entry >= max(n_nodes, 1):
            raise FormatError("graph.qvg: a neighbour id or the entry point is out of range")
        if layout == 1:
            # HNSW{M}_PQ{m}: codes of the vectors themselves, decoded with the codebooks.
            cb = owned("codebooks.qvc", 3)
            m, ksub, dsub, _nb = struct.unpack_from("<IIII", cb, 0)
            codebook = f32s(cb[16:16 + 4 * m * ksub * dsub])
            data, vb, _elem, n_vec, _rb = vectors_file_dim("codes.qvv", 2, pq_m)
            full = {}
            for i in range(ntotal):
                code = data[4096 + i * vb:4096 + (i + 1) * vb]
                full[i] = [codebook[(j * ksub + code[j]) * dsub + t] for j in range(m) for t in range(dsub)]
        else:
            data, vb, _elem, n_vec, _rb = vectors_file("vectors.qvv", 1)
            full = {i: f32s(data[4096 + i * vb:4096 + (i + 1) * vb]) for i in range(ntotal)}
        if n_vec != ntotal:
            raise FormatError(f"{n_vec} rows, manifest says {ntotal}")
        return {**info, "graph_slots": n_slots}, full

    # 05-codebooks.md: quantizer and codebooks.
    q = owned("quantizer.qvq", 2)
    qn, qd, _m, _entry, _maxl, _r, n_slots = struct.unpack_from("<IIIIIIQ", q, 0)
    centroids = f32s(q[32:32 + 4 * qn * qd])
    if layout != 3:
        cb = owned("codebooks.qvc", 3)
        m, ksub, dsub, _nb = struct.unpack_from("<IIII", cb, 0)
        codebook = f32s(cb[16:16 + 4 * m * ksub * dsub])
    # 04-segment.md: list directory.
    d = owned(next(n for n, (kind, _s, _c) in files.items() if kind == 4), 4)
    d_nlist, n_ext, n_seg, code_size, d_ntotal, flags = struct.unpack_from("<IIIIQQ", d, 0)
    # 1.5: flags bit 0, the ids kept with the vectors (the extents hold codes alone).
    ids_apart = flags == 1
    if flags not in (0, 1) or (ids_apart and not refine):
        raise FormatError(f"lists.qvd: flags {flags:#x}")
    starts = struct.unpack_from(f"<{d_nlist + 1}I", d, 32)
    off = 32 + 4 * (d_nlist + 1)
    off += (-off) % 8
    extents = [struct.unpack_from("<IIQQII", d, off + 32 * i) for i in range(n_ext)]
    # 12-generations.md: segment numbers may have gaps; the extents name theirs.
    seg_numbers = sorted({e[0] for e in extents})
    segments = {s: paged(f"seg-{s:06d}.qvs", 5)[0] for s in seg_numbers}
    # 10-vectors.md: with refine, one vectors file per segment, every page checked.
    vec_pages = {}
    for s in seg_numbers if refine else []:
        data, vb, elem, _n, rb = vectors_file(f"vec-{s:06d}.qvv", refine)
        if (rb == vb + 8) != ids_apart:
            raise FormatError(f"vec-{s:06d}.qvv: records disagree with the list directory's flags")
        vec_pages[s] = (data, vb, elem, rb)
    vectors, full = {}, {}
    for lst in range(d_nlist):
        # 05-codebooks.md: raw codes are decoded without the list's centroid.
        c = [0.0] * dim if raw else centroids[lst * dim:(lst + 1) * dim]
        for seg, count, eoff, length, ecrc, vpage in extents[starts[lst]:starts[lst + 1]]:
            ext = segments[seg][eoff:eoff + length]
            if len(ext) != length or crc32c(ext) != ecrc:
                raise FormatError(f"seg-{seg:06d}.qvs: extent at {eoff}: checksum mismatch")
            # 04-segment.md: layout 1 row-major bytes, layout 2 blocks of 32 with nibbles.
            codes_len = count * code_size if layout in (1, 3) else (count + 31) // 32 * 32 * code_size
            if ids_apart:
                # 10-vectors.md: the block of ids after the extent's records, each record's id
                # the same.
                data, vb, elem, rb = vec_pages[seg]
                block = 4096 * (1 + vpage + (count * rb + 4095) // 4096)
                ids = struct.unpack_from(f"<{count}Q", data, block)
                at = 4096 * (1 + vpage)
                if any(struct.unpack_from("<Q", data, at + i * rb + vb)[0] != vid for i, vid in enumerate(ids)):
                    raise FormatError(f"vec-{seg:06d}.qvv: a record's id differs from its block's")
            else:
                ids = struct.unpack_from(f"<{count}Q", ext, (codes_len + 7) // 8 * 8)
            for i, vid in enumerate(ids):
                if layout == 3:
                    # IVF…,Flat: the vectors themselves, float32.
                    vectors[vid] = f32s(ext[i * code_size:(i + 1) * code_size])
                    continue
                if layout == 1:
                    code = ext[i * code_size:(i + 1) * code_size]
                else:
                    block, w = (i // 32) * 32 * code_size, i % 32
                    code = [ext[block + 32 * (j // 2) + 16 * (j % 2) + w % 16] >> (4 * (w // 16)) & 15
                            for j in range(m)]
                v = list(c)
                for j in range(m):
                    base = (j * ksub + code[j]) * dsub
                    for t in range(dsub):
                        v[j * dsub + t] += codebook[base + t]
                vectors[vid] = v
                if refine:
                    data, vb, elem, rb = vec_pages[seg]
                    at = 4096 * (1 + vpage) + i * rb
                    raw_v = data[at:at + vb]
                    full[vid] = f32s(raw_v) if elem == 1 else [float(x) for x in raw_v]
    if len(vectors) != ntotal or d_ntotal != ntotal:
        raise FormatError(f"decoded {len(vectors)} vectors, manifest says {ntotal}")
    info.update({"segments": n_seg, "extents": n_ext, "refine": [None, "float32", "uint8"][refine]})
    return info, (full if refine else vectors)


def read_fvecs(path):
    data = open(path, "rb").read()
    d = struct.unpack_from("<i", data, 0)[0]
    stride = 4 + 4 * d
    return [list(struct.unpack_from(f"<{d}f", data, r * stride + 4)) for r in range(len(data) // stride)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index")
    ap.add_argument("--queries", help=".fvecs queries: print exhaustive top-k ids over the decoded vectors")
    ap.add_argument("--k", type=int, default=10)
    a = ap.parse_args()
    try:
        info, vectors = read_index(a.index)
    except FormatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not a.queries:
        print(json.dumps({"ok": True, **info}))
        return 0
    ip = info["metric"] != "l2"
    for q in read_fvecs(a.queries):
        if info["metric"] == "cosine":
            n = sum(x * x for x in q) ** 0.5 or 1.0
            q = [x / n for x in q]
        scored = []
        for vid, v in vectors.items():
            s = -sum(x * y for x, y in zip(q, v)) if ip else sum((x - y) ** 2 for x, y in zip(q, v))
            scored.append((s, vid))
        scored.sort()
        print(json.dumps([vid for _, vid in scored[:a.k]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
