"""The OpenAI Python client against `sida serve`: one completion plain, one streamed.

Usage: openai_client.py BASE_URL OUT.json IDS MAX_TOKENS   (IDS: comma-separated token ids)
Writes {"plain": {token_ids, text, finish_reason, usage}, "stream": {token_ids, text, chunks,
finish_reason}}. Exits 3 when the openai package is not installed.
"""
import json
import sys

try:
    import openai
except ImportError as error:  # the test skips (or fails in CI)
    print(f"cannot import openai: {error}")
    sys.exit(3)


def main():
    base_url, out_path, ids, max_tokens = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    prompt = [int(x) for x in ids.split(",")]
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=60)

    plain = client.completions.create(model="tiny", prompt=prompt, max_tokens=max_tokens)
    choice = plain.choices[0].model_dump()
    result = {"plain": {"token_ids": choice["token_ids"], "text": choice["text"],
                        "finish_reason": choice["finish_reason"], "usage": plain.usage.model_dump()}}

    token_ids, text, chunks, finish_reason = [], "", 0, None
    for chunk in client.completions.create(model="tiny", prompt=prompt, max_tokens=max_tokens, stream=True):
        chunks += 1
        c = chunk.choices[0].model_dump()
        token_ids += c["token_ids"]
        text += c["text"]
        finish_reason = c["finish_reason"] or finish_reason
    result["stream"] = {"token_ids": token_ids, "text": text, "chunks": chunks, "finish_reason": finish_reason}
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
