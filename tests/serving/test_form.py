"""Checks of the request fields (`clsclip.serving.form`)."""

import pytest


@pytest.mark.parametrize(
    ("text", "code"),
    [("true", "bad_threshold"), ("1.5", "bad_threshold"), ("nan", "bad_threshold"),
     ("[0.4]", "bad_threshold"), ('{"dog": 2}', "bad_threshold"), ("{", "bad_threshold")],
)  # fmt: skip
def test_threshold_fields_take_numbers_or_an_object_only(text, code) -> None:
    from clsclip.serving.form import ApiError, parse_min_score, parse_threshold

    assert parse_threshold("0.4") == 0.4 and parse_threshold('{"dog": 0.3}') == {"dog": 0.3}
    assert parse_threshold("") is None and parse_min_score("0.6") == 0.6
    with pytest.raises(ApiError) as caught:
        parse_threshold(text)
    assert caught.value.code == code
    with pytest.raises(ApiError) as caught:
        parse_min_score("true")
    assert caught.value.code == "bad_min_score"


def test_unknown_paths_and_methods_answer_in_the_error_format() -> None:
    from starlette.testclient import TestClient

    from clsclip.serving import create_app
    from tests.conftest import tiny_segmenter

    with TestClient(create_app(tiny_segmenter())) as client:
        cases = [("GET", "/v1/segment", 405, "method_not_allowed"),
                 ("GET", "/", 404, "not_found"),
                 ("DELETE", "/healthz", 405, "method_not_allowed")]  # fmt: skip
        for method, path, status, code in cases:
            response = client.request(method, path)
            assert response.status_code == status
            error = response.json()["error"]
            assert error["code"] == code and path in error["message"]


def test_an_image_past_pils_own_bound_is_413_not_415() -> None:
    import io

    from PIL import Image

    from clsclip.serving.form import ApiError, Limits, image_pixels

    huge = io.BytesIO()  # 20,000 x 10,000 = 200 M pixels: past PIL's bomb bound, in 30 kB
    Image.new("1", (20_000, 10_000)).save(huge, format="PNG")
    try:
        image_pixels(huge.getvalue(), Limits())
    except ApiError as e:
        assert (e.status, e.code, e.limit) == (413, "image_too_large", "max_image_pixels")
    else:
        raise AssertionError("not refused")
