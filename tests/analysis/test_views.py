import uuid

from django.test import Client

from labeling import services
from study.models import StudyItem


def test_analysis_page_shows_counts_and_change_share(make_study, researcher_client: Client) -> None:
    study = make_study(count=2, labels_per_item=2, items_per_participant=2)
    first_item, second_item = StudyItem.objects.filter(study=study).select_related("example")
    plan = {  # item -> the two votes
        first_item.pk: [first_item.example.source_label] * 2,  # unchanged
        second_item.pk: [(second_item.example.source_label + 1) % 10] * 2,  # changed
    }
    for _ in range(2):
        participant = services.join_study(study)
        while (assignment := services.next_assignment(participant)) is not None:
            value = plan[assignment.item_id].pop()
            services.submit_label(participant, assignment.public_id, value, uuid.uuid4(), None)

    html = researcher_client.get(f"/researcher/studies/{study.pk}/analysis/").content.decode()

    assert 'data-measure="labels">4<' in html
    assert 'data-measure="with_majority">2<' in html
    assert 'data-measure="changed_share">0.5000<' in html


def test_analysis_of_another_researchers_study_is_not_found(make_study, outsider) -> None:
    study = make_study()
    client = Client()
    client.force_login(outsider)
    assert client.get(f"/researcher/studies/{study.pk}/analysis/").status_code == 404
    assert client.get(f"/researcher/studies/{study.pk}/").status_code == 404


def test_the_analysis_of_a_study_without_labels_says_so_once(researcher_client, make_study) -> None:
    study = make_study()

    page = researcher_client.get(f"/researcher/studies/{study.pk}/analysis/").content.decode()

    assert 'id="no-labels"' in page
    assert 'id="per-setting"' in page  # the settings, their examples and links
    assert 'id="shares"' not in page  # but no wall of undefined measures
