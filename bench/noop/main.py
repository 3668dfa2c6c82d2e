"""The no-op HTTP function the collect benchmark measures side by side: functions-framework's floor."""

import functions_framework


@functions_framework.http
def noop(request):
    request.get_data()  # read the body, as any real function must
    return {"status": "ok"}, 200
